-- How many resources does each Terraform Enterprise installation manage, day by day?
-- The billable RUM count (metric billable_rum_count) of the last snapshot TFE took each UTC
-- day, per license; zeros from installations that opted out of reporting are left out.
with daily as (
    select
        license_id,
        installation,
        cast(snapshot_at as date) as snapshot_date,
        snapshot_at,
        value,
        product_version,
        row_number() over (
            partition by license_id, cast(snapshot_at as date)
            order by snapshot_at desc, tfe_snapshot_id desc
        ) as position
    from marts.fct_tfe_usage_metrics
    where metric_name = 'billable_rum_count'
      and is_reported
      and value is not null
)

select
    license_id,
    installation,
    snapshot_date,
    cast(value as bigint) as resources_under_management,
    snapshot_at,
    product_version
from daily
where position = 1
order by license_id, snapshot_date
