{{ config(materialized='table') }}

select account_id, account_name from {{ source('staging', 'stg_check__accounts') }}
