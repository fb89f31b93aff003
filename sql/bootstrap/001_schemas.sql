-- The three layers of the warehouse. Idempotent: runs on every start.
create schema if not exists raw;
create schema if not exists staging;
create schema if not exists intermediate;
create schema if not exists marts;
