-- How many Workato tasks and jobs did each workspace run per billing month?
-- Sums the unfiltered workspace totals (grouping = 'workspace', deleted recipes included);
-- the month is the calendar month in the Embedded admin workspace's time zone.
select
    workspace_id,
    max(workspace_name) as workspace_name,
    max(external_id) as external_id,
    period_label as month,
    period_start,
    sum(tasks) as tasks,
    sum(successful_jobs) as successful_jobs,
    sum(failed_jobs) as failed_jobs,
    min(interval_start) as first_interval_start,
    max(interval_end) as last_interval_end
from marts.fct_workato_usage
where grouping = 'workspace'
group by workspace_id, period_label, period_start
order by workspace_id, period_start
