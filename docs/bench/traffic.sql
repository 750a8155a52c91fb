-- GET /v1/traffic at scale: the store's queries (crates/sluice-store/src/traffic.rs) over 100,000
-- clients and 200 routes. Run: see docs/BENCHMARKS.md, issue 6.
-- Setup (in a scratch database with the rollup tables of migrations/0001_ingest.sql):
-- 100,000 clients x 60 active minutes = 6,000,000 client rows; 200 routes x 7 days of minutes = 2,016,000 route rows.
INSERT INTO rollup_client_minute
SELECT 'api_key', 'key-' || c, timestamptz '2026-03-02' + ((c * 7 + m * 37) % 10080) * interval '1 minute',
       10, 9, 0, 0, 0, 0, 1, 0, 0, 10, 0, 0, 1000, 0, 200000, 10, 50000
FROM generate_series(1, 100000) c, generate_series(0, 59) m ON CONFLICT DO NOTHING;
INSERT INTO rollup_route_minute
SELECT '/r/' || r, timestamptz '2026-03-02' + m * interval '1 minute',
       100, 90, 0, 0, 0, 0, 5, 5, 0, 100, 0, 0, 1000, 0, 2000000, 100, 50000
FROM generate_series(1, 200) r, generate_series(0, 10079) m;
ANALYZE;
\timing on
-- The total, default window (6 h, 1-minute steps): what the overview asks.
EXPLAIN (ANALYZE, BUFFERS, SUMMARY) SELECT date_bin(make_interval(secs => 60), minute, timestamptz '2026-03-08 18:00Z') AS t, sum(requests)::int8, sum(status_429)::int8, sum(status_401 + status_403 + status_404 + status_4xx_other)::int8, sum(status_5xx)::int8, sum(latency_sum_us)::int8, sum(latency_count)::int8, max(latency_max_us)::int8 FROM rollup_route_minute WHERE minute >= timestamptz '2026-03-08 18:00Z' AND minute < timestamptz '2026-03-09 00:00Z' GROUP BY 1;
-- The total over the whole week, 1-hour steps (168 points).
EXPLAIN (ANALYZE, SUMMARY) SELECT date_bin(make_interval(secs => 3600), minute, timestamptz '2026-03-02Z') AS t, sum(requests)::int8, sum(status_429)::int8 FROM rollup_route_minute WHERE minute >= timestamptz '2026-03-02Z' AND minute < timestamptz '2026-03-09Z' GROUP BY 1;
-- One client among 100,000, without a kind (the client page).
EXPLAIN (ANALYZE, BUFFERS, SUMMARY) SELECT date_bin(make_interval(secs => 300), minute, timestamptz '2026-03-02Z') AS t, sum(requests)::int8, sum(status_429)::int8 FROM rollup_client_minute WHERE client_kind = ANY(ARRAY['api_key','consumer','user','ip']) AND client = 'key-4242' AND minute >= timestamptz '2026-03-02Z' AND minute < timestamptz '2026-03-09Z' GROUP BY 1;
