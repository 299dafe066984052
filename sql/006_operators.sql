-- Operators of the dispatch centre (people and scripts) and their API tokens.
-- role: dispatcher (works alarms), safety_manager (+ zones and policy), admin (everything).
-- fleets: the fleets the operator may see; NULL means every fleet (admins).
CREATE TABLE operators (
    id          text PRIMARY KEY,
    role        text NOT NULL CHECK (role IN ('dispatcher', 'safety_manager', 'admin')),
    fleets      text[],
    created_at  timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz
);

-- Only a SHA-256 of each token is stored (256-bit random tokens, like device tokens).
CREATE TABLE operator_tokens (
    token_hash  bytea PRIMARY KEY,
    operator_id text NOT NULL REFERENCES operators (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX operator_tokens_operator ON operator_tokens (operator_id);
