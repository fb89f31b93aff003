-- Which HCP Terraform entitlements changed in the last 90 days, from what to what?
-- Compares each validity interval with the previous one of the same organization × source ×
-- entitlement; a key first seen after its organization was (a plan change added it) counts too.
with valued as (
    select
        organization_external_id,
        organization_name,
        value_source,
        entitlement_key,
        valid_from,
        valid_to,
        ended_by,
        feature_set_name,
        case
            when value_type = 'boolean' then case when enabled then 'on' else 'off' end
            when is_unlimited then 'unlimited'
            else cast(limit_value as varchar)
        end as entitlement_value,
        min(valid_from) over (partition by organization_external_id, value_source) as source_first_seen_at
    from marts.fct_subscription_entitlements
),

compared as (
    select
        *,
        lag(entitlement_value) over (
            partition by organization_external_id, value_source, entitlement_key order by valid_from
        ) as previous_value,
        lag(ended_by) over (
            partition by organization_external_id, value_source, entitlement_key order by valid_from
        ) as previous_ended_by,
        row_number() over (
            partition by organization_external_id, value_source, entitlement_key order by valid_from
        ) as interval_number
    from valued
)

select
    valid_from as changed_at,
    organization_name,
    organization_external_id,
    value_source,
    entitlement_key,
    case
        when interval_number = 1 or previous_ended_by = 'removed' then '(absent)'
        else previous_value
    end as value_before,
    entitlement_value as value_after,
    feature_set_name
from compared
where valid_from >= current_timestamp - interval '90 days'
  and (
      (interval_number = 1 and valid_from > source_first_seen_at)
      or previous_ended_by = 'removed'
      or (interval_number > 1 and previous_value <> entitlement_value)
  )
order by changed_at desc, organization_name, entitlement_key
