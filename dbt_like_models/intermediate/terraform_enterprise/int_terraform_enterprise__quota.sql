{{ config(materialized='view') }}

-- TFE contributes no quota rows, on purpose: the usage bundle carries usage only; no metric in
-- the data reference (API_CONTRACTS.md §1.6) is a licensed limit, and the licence's terms are
-- not in the System API (see the no_quota_rows macro).

{{ no_quota_rows() }}
