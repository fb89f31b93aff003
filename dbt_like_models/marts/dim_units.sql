{{ config(materialized='table') }}

-- The units every vendor reports in, spelled once (DESIGN.md): a seed written as a VALUES
-- list, so the warehouse can explain a unit without the docs at hand. `kind` tells how to read
-- a number: a `consumption` counter grows within a billing period and starts again at the next
-- one; a `capacity` count is a level at the moment of the snapshot.

with

units (unit, unit_name, kind, vendors, description) as (

    values
        ('cloud_units', 'Cloud Units', 'consumption', 'thousandeyes',
         'ThousandEyes units consumed by tests run from Cloud Agents in the billing period.'),
        ('enterprise_units', 'Enterprise Units', 'consumption', 'thousandeyes',
         'ThousandEyes units consumed by tests run from Enterprise Agents in the billing period.'),
        ('endpoint_agents', 'Endpoint Agents', 'capacity', 'thousandeyes',
         'ThousandEyes Endpoint Agent licences in use (Advantage).'),
        ('endpoint_agents_essentials', 'Endpoint Agents Essentials', 'capacity', 'thousandeyes',
         'ThousandEyes Endpoint Agent Essentials licences in use.'),
        ('endpoint_agents_embedded', 'Embedded Endpoint Agents', 'capacity', 'thousandeyes',
         'ThousandEyes embedded Endpoint Agents in use (e.g. on Cisco devices).'),
        ('enterprise_agents', 'Enterprise Agents', 'capacity', 'thousandeyes',
         'ThousandEyes Enterprise Agents (including virtual agents) in use.'),
        ('managed_resources', 'Resources Under Management', 'capacity', 'hcp_terraform,terraform_enterprise',
         'Terraform resources under management (RUM): resources in state that the plan bills for.'),
        ('runs', 'Runs', 'consumption', 'hcp_terraform',
         'Terraform runs (applies) counted against the plan in the billing period.'),
        ('agents', 'Agents', 'capacity', 'hcp_terraform,terraform_enterprise',
         'Self-hosted Terraform agents: the HCP plan''s agents ceiling, and the active agents a TFE installation reports.'),
        ('users', 'Users', 'capacity', 'hcp_terraform,terraform_enterprise',
         'Users: members counted against the HCP plan''s user limit, and the users a TFE installation reports.'),
        ('tasks', 'Tasks', 'consumption', 'workato',
         'Workato tasks (billable recipe actions) executed in the period.'),
        ('jobs', 'Jobs', 'consumption', 'workato',
         'Workato recipe jobs (successful and failed) run in the period.')

),

final as (

    select
        ---------- keys
        unit,
        ---------- labels
        unit_name,
        kind,
        vendors,
        description
    from units

)

select * from final
