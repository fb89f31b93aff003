-- One row per landed vendor response (append-only audit trail). The body itself is the
-- gzip file at landing_path under USAGE_LANDING_DIR; sha256 and bytes are of the raw body.
-- batch_id groups the responses of one pull of one account (all pages and endpoints).
create table if not exists raw.api_snapshots (
    snapshot_id     varchar primary key,
    batch_id        varchar not null,
    vendor          varchar not null,
    endpoint        varchar not null,
    account_id      varchar not null,
    partition_key   varchar not null,
    request         varchar not null,   -- JSON: method, path, params, body; never headers or tokens
    status          integer not null,
    fetched_at      timestamptz not null,
    sha256          varchar not null,
    bytes           bigint not null,
    landing_path    varchar not null,
    recorded_at     timestamptz not null
);
create index if not exists api_snapshots_lookup on raw.api_snapshots (vendor, partition_key, account_id, fetched_at);
