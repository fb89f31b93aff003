{{ config(materialized='view') }}

-- Workato contributes no quota rows, on purpose: the usage API reports usage only, and the
-- Embedded contract's task allowance is in no API we call (see the no_quota_rows macro).

{{ no_quota_rows() }}
