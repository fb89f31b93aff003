{{ config(materialized='table') }}

select id, account_id, unit, used, day from {{ source('staging', 'stg_check__rows') }}
