//! `sluice_store::roles::grant_readonly` on a real Postgres: the role logs in, reads Sluice's
//! tables (also one created after the grant), cannot read token hashes or write anything, and a
//! second run changes nothing.

use sluice_store::roles::{self, ReadonlyGrant};
use sluice_store::testing::TestDb;
use sqlx::{ConnectOptions, Connection, PgConnection};

/// SQLSTATE of a statement refused for privileges, or of a write in a read-only transaction.
const INSUFFICIENT_PRIVILEGE: &str = "42501";
const READ_ONLY_TRANSACTION: &str = "25006";

fn code(e: sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.code().unwrap_or_default().into_owned(),
        other => panic!("not a database error: {other}"),
    }
}

#[tokio::test]
async fn the_readonly_role_reads_sluice_tables_but_not_token_hashes_and_writes_nothing() {
    let db = TestDb::new().await;
    let role = db.readonly_role_name();
    assert!(!roles::role_exists(&db.pool, &role).await.unwrap());
    let first: ReadonlyGrant = roles::grant_readonly(&db.pool, &role, Some("pw-1"))
        .await
        .unwrap();
    assert!(first.created && first.password_set);
    for t in [
        "anomalies",
        "access_log",
        "rollup_client_minute",
        "policy_versions",
        "alerts",
    ] {
        assert!(
            first.tables.iter().any(|x| x == t),
            "{t} in {:?}",
            first.tables
        );
    }
    for hidden in roles::EXCLUDED_TABLES {
        assert!(!first.tables.iter().any(|x| x == hidden), "{hidden}");
    }
    // Idempotent: the same tables, no new role.
    let again = roles::grant_readonly(&db.pool, &role, None).await.unwrap();
    assert!(!again.created && !again.password_set);
    assert_eq!(again.tables, first.tables);

    sqlx::query(
        "INSERT INTO anomalies (client_kind, client, kind, score, first_detected, last_flagged, state, reasons)
         VALUES ('ip', '192.0.2.1', 'flood', 0.9, now(), now(), 'open', '[]')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    // A table created after the grant (a later migration) is readable through default privileges.
    sqlx::query("CREATE TABLE later_table (x int)")
        .execute(&db.pool)
        .await
        .unwrap();

    let mut ro: PgConnection = db
        .options
        .clone()
        .username(&role)
        .password("pw-1")
        .connect()
        .await
        .expect("the read-only role logs in");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM anomalies")
        .fetch_one(&mut ro)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM later_table")
        .fetch_one(&mut ro)
        .await
        .unwrap();
    assert_eq!(n, 0);
    for sql in [
        "SELECT token_hash FROM api_tokens",
        "SELECT count(*) FROM api_tokens",
        "SELECT count(*) FROM _sqlx_migrations",
    ] {
        let e = sqlx::query(sql).execute(&mut ro).await.unwrap_err();
        assert_eq!(code(e), INSUFFICIENT_PRIVILEGE, "{sql}");
    }
    // Writes fail: the session is read-only by default, and without it there is no privilege.
    let e = sqlx::query("DELETE FROM anomalies")
        .execute(&mut ro)
        .await
        .unwrap_err();
    assert_eq!(code(e), READ_ONLY_TRANSACTION);
    sqlx::query("SET default_transaction_read_only = off")
        .execute(&mut ro)
        .await
        .unwrap();
    for sql in [
        "DELETE FROM anomalies",
        "UPDATE policy_rollout SET version = 1",
    ] {
        let e = sqlx::query(sql).execute(&mut ro).await.unwrap_err();
        assert_eq!(code(e), INSUFFICIENT_PRIVILEGE, "{sql}");
    }
    ro.close().await.unwrap();
}

#[tokio::test]
async fn bad_names_and_privileged_roles_are_refused() {
    let db = TestDb::new().await;
    let e = roles::grant_readonly(&db.pool, "Robert'); DROP TABLE x;--", None)
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("invalid role name"), "{e}");
    // The connected user of the tests is a superuser: it must not be "made read-only".
    let me: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let e = roles::grant_readonly(&db.pool, &me, None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cannot be made read-only"), "{e}");
}
