-- Indexes for the analyst read API (GET /v1/anomalies, GET /v1/clients/{client}).

-- Anomalies of a client by its value alone: the client view and `?client=` do not always know
-- the kind, and the unique key (client_kind, client, kind, first_detected) cannot serve a lookup
-- that does not start with the kind.
CREATE INDEX anomalies_client ON anomalies (client, client_kind);

-- Keyset pagination orders by (first_detected DESC, id DESC) and continues after a
-- (first_detected, id) pair; an index on both columns answers a page without sorting ties.
-- It replaces the index on first_detected alone, which it covers.
CREATE INDEX anomalies_recent ON anomalies (first_detected DESC, id DESC);
DROP INDEX anomalies_first_detected;
