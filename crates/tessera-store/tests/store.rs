//! One storage suite, run against both backends: SQLite (a temp file) and PostgreSQL (a fresh
//! database per test). Every test is generated twice by `suite!` at the bottom.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::HashSet;
use std::sync::Arc;

use tessera_core::client::{AppType, Client, ClientSettings};
use tessera_core::connection::{Connection, ConnectionSettings, Strategy};
use tessera_core::user::User;
use tessera_store::testdb::TestDb;
use tessera_store::*;

async fn open(backend: &str) -> (Arc<dyn Store>, TestDb) {
    let db = TestDb::new(backend).await.expect("test database");
    let store = tessera_store::open(&db.url, &PoolOptions::default())
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    (store, db)
}

/// The suite's shorthand for the two hot-path operations: a code stored with sign-up open, no
/// version check and no lease; an attempt counted with no lockout key blocked.
trait Shorthand {
    async fn issue(&self, c: &NewChallenge, m: &NewOutboxMessage) -> Result<Issued>;
    async fn attempt(&self, connection: &str, identifier: &str) -> Result<Option<Challenge>>;
}

impl<S: Store + ?Sized> Shorthand for S {
    async fn issue(&self, c: &NewChallenge, m: &NewOutboxMessage) -> Result<Issued> {
        let o = IssueOptions {
            allow_signup: true,
            ..IssueOptions::default()
        };
        self.issue_challenge(c, m, &o).await
    }

    async fn attempt(&self, connection: &str, identifier: &str) -> Result<Option<Challenge>> {
        Ok(
            match self
                .count_attempt(connection, identifier, ["no-block-1", "no-block-2"], 0)
                .await?
            {
                Attempt::Counted { challenge, .. } => Some(challenge),
                Attempt::NoCode { .. } => None,
                Attempt::LockedOut => panic!("no lockout key is blocked here"),
            },
        )
    }
}

fn challenge(id: &str, ident: &str, hash: u8) -> NewChallenge {
    NewChallenge {
        id: id.into(),
        connection: "email".into(),
        identifier: ident.into(),
        client_id: "app".into(),
        code_hash: vec![hash; 32],
        send: "code".into(),
        auth_params: "{}".into(),
        created_at: 100,
        expires_at: 280,
        max_attempts: 3,
        ip: Some("127.0.0.1".into()),
        user_agent: None,
    }
}

fn message(id: &str, at: i64) -> NewOutboxMessage {
    NewOutboxMessage {
        id: id.into(),
        channel: "email".into(),
        payload: vec![1, 2, 3],
        created_at: at,
        not_after: Some(at + 180),
    }
}

async fn migrations_are_idempotent(s: &dyn Store) {
    s.migrate().await.unwrap();
    s.migrate().await.unwrap();
    s.ping().await.unwrap();
}

fn client(id: &str) -> Client {
    Client {
        client_id: id.into(),
        secret_hash: Some(vec![9; 32]),
        settings: ClientSettings {
            name: "App".into(),
            app_type: AppType::RegularWeb,
            callbacks: vec!["https://a.example/cb".into()],
            web_origins: vec![],
            grant_types: vec!["refresh_token".into()],
            connections: vec!["email".into()],
            trust_forwarded_for: false,
            allowed_logout_urls: vec![],
            allow_browser_start: false,
            cross_origin_authentication: true,
            legacy_passwordless: false,
            management_scopes: vec![],
            id_token_lifetime_secs: None,
            signing_alg: None,
        },
    }
}

async fn clients_and_connections_round_trip(s: &dyn Store) {
    let c = client("app");
    s.upsert_client(&c, 1).await.unwrap();
    assert_eq!(s.get_client("app").await.unwrap(), Some(c.clone()));
    let mut c2 = c.clone();
    c2.settings.name = "Renamed".into();
    c2.secret_hash = None;
    s.upsert_client(&c2, 2).await.unwrap();
    assert_eq!(s.get_client("app").await.unwrap(), Some(c2));
    assert!(s.get_client("nope").await.unwrap().is_none());
    assert_eq!(s.list_clients().await.unwrap().len(), 1);

    let conn = Connection {
        name: "email".into(),
        strategy: Strategy::Email,
        settings: ConnectionSettings::default(),
    };
    s.upsert_connection(&conn, 1).await.unwrap();
    assert_eq!(s.get_connection("email").await.unwrap(), Some(conn));
    assert!(s.get_connection("sms").await.unwrap().is_none());
}

async fn challenges_count_attempts_and_are_replaced_and_consumed_once(s: &dyn Store) {
    assert!(s.attempt("email", "a@x.io").await.unwrap().is_none());
    s.issue(&challenge("c1", "a@x.io", 1), &message("m1", 100))
        .await
        .unwrap();
    let c = s.attempt("email", "a@x.io").await.unwrap().unwrap();
    assert_eq!((c.id.as_str(), c.attempts, c.code_hash[0]), ("c1", 1, 1));
    assert_eq!(
        s.attempt("email", "a@x.io")
            .await
            .unwrap()
            .unwrap()
            .attempts,
        2
    );
    // another identity is untouched
    s.issue(&challenge("c2", "b@x.io", 2), &message("m2", 100))
        .await
        .unwrap();
    assert_eq!(
        s.attempt("email", "b@x.io")
            .await
            .unwrap()
            .unwrap()
            .attempts,
        1
    );
    // a new code replaces the old one and resets the counter
    s.issue(&challenge("c3", "a@x.io", 3), &message("m3", 101))
        .await
        .unwrap();
    let c = s.attempt("email", "a@x.io").await.unwrap().unwrap();
    assert_eq!((c.id.as_str(), c.attempts, c.code_hash[0]), ("c3", 1, 3));
    assert!(
        !s.consume_challenge("c1").await.unwrap(),
        "the replaced code is gone"
    );
    assert!(s.consume_challenge("c3").await.unwrap());
    assert!(!s.consume_challenge("c3").await.unwrap());
    assert!(s.attempt("email", "a@x.io").await.unwrap().is_none());
    assert_eq!(s.outbox_depth().await.unwrap(), 3);
}

async fn concurrent_attempts_are_all_counted_and_consume_has_one_winner(s: Arc<dyn Store>) {
    s.issue(&challenge("c1", "a@x.io", 1), &message("m1", 100))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            s.attempt("email", "a@x.io")
                .await
                .unwrap()
                .unwrap()
                .attempts
        }));
    }
    let mut seen = HashSet::new();
    for t in tasks {
        assert!(
            seen.insert(t.await.unwrap()),
            "two attempts saw the same counter value"
        );
    }
    assert_eq!(seen, (1..=20).collect());
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            s.consume_challenge("c1").await.unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1);
}

async fn config_version_rises_with_every_change_to_applications_and_connections(s: &dyn Store) {
    let last = std::cell::Cell::new(s.config_version().await.unwrap());
    let rose = |now: i64, what: &str| {
        assert!(now > last.get(), "{what}: {now} after {}", last.get());
        last.set(now);
    };
    let mut c = client("app");
    s.upsert_client(&c, 1).await.unwrap();
    rose(s.config_version().await.unwrap(), "insert");
    c.settings.callbacks.push("https://b.example/cb".into());
    assert!(s.update_client(&c, 2).await.unwrap());
    rose(s.config_version().await.unwrap(), "update");
    assert!(s.bootstrap_client(&client("boot"), "h1", 3).await.unwrap());
    rose(s.config_version().await.unwrap(), "bootstrap");
    // The file unchanged: nothing written, the version (and every node's cache) stays.
    assert!(!s.bootstrap_client(&client("boot"), "h1", 4).await.unwrap());
    assert_eq!(s.config_version().await.unwrap(), last.get());
    let conn = Connection {
        name: "email".into(),
        strategy: Strategy::Email,
        settings: ConnectionSettings::default(),
    };
    s.upsert_connection(&conn, 5).await.unwrap();
    rose(s.config_version().await.unwrap(), "connection");
    let mut conn2 = conn.clone();
    conn2.settings.code_length = 8;
    assert!(s.update_connection(&conn2, 6).await.unwrap());
    rose(s.config_version().await.unwrap(), "connection update");
    assert!(s.delete_client("app").await.unwrap());
    rose(s.config_version().await.unwrap(), "delete");
    // Reads and sign-in work leave it alone.
    s.get_client("boot").await.unwrap();
    s.issue(&challenge("c1", "v@x.io", 1), &message("m1", 100))
        .await
        .unwrap();
    s.sign_in(
        &candidate("cccccccccccccccccccccccc", "v@x.io"),
        "v@x.io",
        true,
        500,
    )
    .await
    .unwrap();
    assert_eq!(s.config_version().await.unwrap(), last.get());
}

async fn issuing_checks_the_version_and_picks_the_channel_in_one_go(s: &dyn Store) {
    let v = s.config_version().await.unwrap();
    // Each issue records the event that applies, in the same write.
    let at = |i: u32, version: Option<i64>, allow_signup: bool| IssueOptions {
        allow_signup,
        config_version: version,
        lease: None,
        events: Some(IssueEvents {
            sent: Event {
                kind: "cls".into(),
                ..event(&format!("issued{i}"), 100)
            },
            not_sent: Event {
                kind: "fcls".into(),
                ..event(&format!("issued{i}"), 100)
            },
        }),
    };
    // Another version: nothing is written.
    assert_eq!(
        s.issue_challenge(
            &challenge("c0", "new@x.io", 1),
            &message("m0", 100),
            &at(0, Some(v + 1), true)
        )
        .await
        .unwrap(),
        Issued::Stale { config_version: v }
    );
    assert!(s.attempt("email", "new@x.io").await.unwrap().is_none());
    assert_eq!(s.outbox_depth().await.unwrap(), 0);
    // An unknown address: sent when sign-up is open, void when it is closed.
    for (i, open, delivered) in [(1, true, true), (2, false, false)] {
        assert_eq!(
            s.issue_challenge(
                &challenge(&format!("c{i}"), &format!("new{i}@x.io"), 1),
                &message(&format!("m{i}"), 100),
                &at(i, Some(v), open)
            )
            .await
            .unwrap(),
            Issued::Queued { delivered }
        );
    }
    // A known user: sent even with sign-up closed, unless blocked.
    let SignIn::Ok { user, .. } = s
        .sign_in(
            &candidate("dddddddddddddddddddddddd", "k@x.io"),
            "k@x.io",
            true,
            500,
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        s.issue_challenge(
            &challenge("c3", "k@x.io", 1),
            &message("m3", 100),
            &at(3, None, false)
        )
        .await
        .unwrap(),
        Issued::Queued { delivered: true }
    );
    s.set_user_blocked(&user.user_id, true, 600).await.unwrap();
    assert_eq!(
        s.issue_challenge(
            &challenge("c4", "k@x.io", 1),
            &message("m4", 100),
            &at(4, None, true)
        )
        .await
        .unwrap(),
        Issued::Queued { delivered: false }
    );
    let claimed = s.claim_outbox("A", 200, 60, 10).await.unwrap();
    let channels: Vec<(&str, &str)> = claimed
        .iter()
        .map(|m| (m.id.as_str(), m.channel.as_str()))
        .collect();
    assert_eq!(
        channels,
        [
            ("m1", "email"),
            ("m2", VOID_CHANNEL),
            ("m3", "email"),
            ("m4", VOID_CHANNEL)
        ]
    );
    // None for the stale one, which wrote nothing; the message's fate for the others.
    let mut recorded: Vec<(String, String)> = s
        .list_events(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.id.starts_with("issued"))
        .map(|e| (e.id, e.kind))
        .collect();
    recorded.sort();
    assert_eq!(
        recorded,
        [
            ("issued1".to_string(), "cls".to_string()),
            ("issued2".into(), "fcls".into()),
            ("issued3".into(), "cls".into()),
            ("issued4".into(), "fcls".into()),
        ]
    );
    for m in &claimed {
        s.settle_outbox(&m.id, &OutboxOutcome::Delivered)
            .await
            .unwrap();
    }
    // A message stored leased to its node's worker is claimed by no one until the lease ends.
    let leased = IssueOptions {
        allow_signup: true,
        config_version: None,
        lease: Some(("node-a".into(), 500)),
        events: None,
    };
    s.issue_challenge(&challenge("c5", "l@x.io", 1), &message("m5", 300), &leased)
        .await
        .unwrap();
    assert!(s.claim_outbox("B", 499, 60, 10).await.unwrap().is_empty());
    let late = s.claim_outbox("B", 501, 60, 10).await.unwrap();
    assert_eq!(late.len(), 1);
    assert_eq!((late[0].id.as_str(), late[0].attempts), ("m5", 2));
}

async fn a_blocked_identity_gets_no_attempt_counted(s: &dyn Store) {
    s.issue(&challenge("c1", "b@x.io", 1), &message("m1", 100))
        .await
        .unwrap();
    s.add_strike("fail:ip", 1000, 60, 3600).await.unwrap();
    assert!(matches!(
        s.count_attempt("email", "b@x.io", ["fail:id", "fail:ip"], 1010)
            .await
            .unwrap(),
        Attempt::LockedOut
    ));
    // The block over, the first attempt counted is the first.
    let Attempt::Counted {
        challenge,
        config_version,
    } = s
        .count_attempt("email", "b@x.io", ["fail:id", "fail:ip"], 1061)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(challenge.attempts, 1);
    assert_eq!(config_version, s.config_version().await.unwrap());
    assert!(matches!(
        s.count_attempt("email", "none@x.io", ["fail:id", "fail:ip"], 1061)
            .await
            .unwrap(),
        Attempt::NoCode { .. }
    ));
}

async fn sealed_access_tokens_need_the_user_the_application_and_the_grant(s: &dyn Store) {
    s.upsert_client(&client("app"), 1).await.unwrap();
    let SignIn::Ok { user, .. } = s
        .sign_in(
            &candidate("eeeeeeeeeeeeeeeeeeeeeeee", "t@x.io"),
            "t@x.io",
            true,
            500,
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    let id = user.user_id.as_str();
    let ok = |u: Option<User>| u.is_some_and(|u| u.user_id == id);
    assert!(ok(s.access_token_user(id, "app", None).await.unwrap()));
    assert!(ok(s
        .access_token_user(id, "app", Some("g1"))
        .await
        .unwrap()));
    assert!(
        s.access_token_user(id, "gone", None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.access_token_user("email|nobody", "app", None)
            .await
            .unwrap()
            .is_none()
    );
    s.revoke_grant("g1", 600).await.unwrap();
    assert!(
        s.access_token_user(id, "app", Some("g1"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(ok(s
        .access_token_user(id, "app", Some("g2"))
        .await
        .unwrap()));
    assert!(ok(s.access_token_user(id, "app", None).await.unwrap()));
    s.set_user_blocked(id, true, 700).await.unwrap();
    assert!(
        s.access_token_user(id, "app", None)
            .await
            .unwrap()
            .is_none()
    );
    // A revoked grant is remembered as long as a token of it could live (30 days).
    s.purge_expired(600 + 30 * 86_400).await.unwrap();
    s.set_user_blocked(id, false, 800).await.unwrap();
    assert!(
        s.access_token_user(id, "app", Some("g1"))
            .await
            .unwrap()
            .is_none()
    );
    s.purge_expired(600 + 32 * 86_400).await.unwrap();
    assert!(ok(s
        .access_token_user(id, "app", Some("g1"))
        .await
        .unwrap()));
}

fn candidate(id: &str, email: &str) -> User {
    User::new_email_user(id, "email", email, 500)
}

/// `decide` that always answers `d`, and checks it is shown the live code and version.
fn deciding(d: Decision, code: &'static str, version: i64) -> Decide {
    Box::new(move |ch: &Challenge, v: i64| {
        assert_eq!((ch.id.as_str(), v), (code, version));
        d
    })
}

/// A sign-in with its audit event (`s`, its id the candidate's, no user id yet).
fn signing_in(id: &str, email: &str, allow_signup: bool) -> Option<SignInRequest> {
    Some(SignInRequest {
        candidate: candidate(id, email),
        identifier: email.into(),
        allow_signup,
        event: Some(Event {
            id: id.into(),
            at: 150,
            kind: "s".into(),
            client_id: Some("app".into()),
            connection: Some("email".into()),
            user_id: None,
            ip: None,
            user_agent: None,
            description: "Successful login".into(),
        }),
    })
}

/// The users of the `s` events recorded, by event id.
async fn sign_in_events(s: &dyn Store) -> Vec<(String, Option<String>)> {
    let mut seen: Vec<_> = s
        .list_events(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "s")
        .map(|e| (e.id, e.user_id))
        .collect();
    seen.sort();
    seen
}

async fn redeem(
    s: &dyn Store,
    email: &str,
    decide: Decide,
    sign_in: Option<SignInRequest>,
) -> Redeemed {
    s.redeem("email", email, ["fail:id", "fail:ip"], 150, decide, sign_in)
        .await
        .unwrap()
}

async fn redeeming_counts_then_keeps_refunds_or_consumes_and_signs_in(s: &dyn Store) {
    let v = s.config_version().await.unwrap();
    let never: fn() -> Decide = || Box::new(|_: &Challenge, _: i64| panic!("nothing to decide"));
    // No code: nothing counted, nothing decided.
    let Redeemed::NotCounted(NotCounted::NoCode { config_version }) =
        redeem(s, "a@x.io", never(), None).await
    else {
        panic!()
    };
    assert_eq!(config_version, v);
    s.issue(&challenge("c1", "a@x.io", 1), &message("m1", 100))
        .await
        .unwrap();
    // Kept: the attempt stays counted.
    let Redeemed::Counted {
        challenge: ch,
        config_version,
        outcome: Outcome::Kept,
    } = redeem(s, "a@x.io", deciding(Decision::Keep, "c1", v), None).await
    else {
        panic!()
    };
    assert_eq!((ch.attempts, config_version), (1, v));
    // Refunded: counted (the code shows 2), then given back.
    let Redeemed::Counted {
        challenge: ch,
        outcome: Outcome::Refunded,
        ..
    } = redeem(s, "a@x.io", deciding(Decision::Refund, "c1", v), None).await
    else {
        panic!()
    };
    assert_eq!(ch.attempts, 2);
    assert_eq!(
        s.attempt("email", "a@x.io")
            .await
            .unwrap()
            .unwrap()
            .attempts,
        2
    );
    // Consumed with a sign-in: a new user, and the code is gone.
    let Redeemed::Counted {
        challenge: ch,
        outcome: Outcome::SignedIn(SignIn::Ok { user, created }),
        ..
    } = redeem(
        s,
        "a@x.io",
        deciding(Decision::Consume, "c1", v),
        signing_in("aaaaaaaaaaaaaaaaaaaaaaaa", "a@x.io", true),
    )
    .await
    else {
        panic!()
    };
    assert_eq!(ch.attempts, 3);
    assert!(created);
    assert_eq!(user.user_id, "email|aaaaaaaaaaaaaaaaaaaaaaaa");
    assert_eq!((user.logins_count, user.last_login), (1, Some(150)));
    assert!(s.attempt("email", "a@x.io").await.unwrap().is_none());
    assert!(!s.consume_challenge("c1").await.unwrap());
    // The next code signs the same user in again.
    s.issue(&challenge("c2", "a@x.io", 2), &message("m2", 100))
        .await
        .unwrap();
    let Redeemed::Counted {
        outcome:
            Outcome::SignedIn(SignIn::Ok {
                user: again,
                created,
            }),
        ..
    } = redeem(
        s,
        "a@x.io",
        deciding(Decision::Consume, "c2", v),
        signing_in("bbbbbbbbbbbbbbbbbbbbbbbb", "a@x.io", true),
    )
    .await
    else {
        panic!()
    };
    assert!(!created);
    assert_eq!(
        (again.user_id, again.logins_count),
        (user.user_id.clone(), 2)
    );
    // Each sign-in's event, with the user's id.
    let signed_in = vec![
        (
            "aaaaaaaaaaaaaaaaaaaaaaaa".to_string(),
            Some(user.user_id.clone()),
        ),
        (
            "bbbbbbbbbbbbbbbbbbbbbbbb".to_string(),
            Some(user.user_id.clone()),
        ),
    ];
    assert_eq!(sign_in_events(s).await, signed_in);
    // Consumed without a sign-in.
    s.issue(&challenge("c3", "a@x.io", 3), &message("m3", 100))
        .await
        .unwrap();
    assert!(matches!(
        redeem(s, "a@x.io", deciding(Decision::Consume, "c3", v), None).await,
        Redeemed::Counted {
            outcome: Outcome::Consumed,
            ..
        }
    ));
    assert_eq!(
        s.find_user("email", "a@x.io")
            .await
            .unwrap()
            .unwrap()
            .logins_count,
        2
    );
    // Sign-up closed to a new address: the code is used up, nobody is made.
    s.issue(&challenge("c4", "new@x.io", 4), &message("m4", 100))
        .await
        .unwrap();
    assert!(matches!(
        redeem(
            s,
            "new@x.io",
            deciding(Decision::Consume, "c4", v),
            signing_in("cccccccccccccccccccccccc", "new@x.io", false),
        )
        .await,
        Redeemed::Counted {
            outcome: Outcome::SignedIn(SignIn::SignupDisabled),
            ..
        }
    ));
    assert!(s.find_user("email", "new@x.io").await.unwrap().is_none());
    assert!(s.attempt("email", "new@x.io").await.unwrap().is_none());
    // A blocked user is not signed in, and stays as they were.
    assert!(s.set_user_blocked(&user.user_id, true, 160).await.unwrap());
    s.issue(&challenge("c5", "a@x.io", 5), &message("m5", 100))
        .await
        .unwrap();
    assert!(matches!(
        redeem(
            s,
            "a@x.io",
            deciding(Decision::Consume, "c5", v),
            signing_in("dddddddddddddddddddddddd", "a@x.io", true),
        )
        .await,
        Redeemed::Counted {
            outcome: Outcome::SignedIn(SignIn::Blocked),
            ..
        }
    ));
    assert_eq!(
        s.find_user("email", "a@x.io")
            .await
            .unwrap()
            .unwrap()
            .logins_count,
        2
    );
    // Nobody signed in, no event.
    assert_eq!(sign_in_events(s).await, signed_in);
    // Locked out: nothing counted, nothing decided.
    s.issue(&challenge("c6", "b@x.io", 6), &message("m6", 100))
        .await
        .unwrap();
    s.add_strike("fail:id", 100, 600, 3600).await.unwrap();
    assert!(matches!(
        redeem(s, "b@x.io", never(), None).await,
        Redeemed::NotCounted(NotCounted::LockedOut)
    ));
    assert!(matches!(
        s.count_attempt("email", "b@x.io", ["none-1", "none-2"], 150)
            .await
            .unwrap(),
        Attempt::Counted { challenge, .. } if challenge.attempts == 1
    ));
}

async fn concurrent_redeems_sign_in_once(s: Arc<dyn Store>) {
    s.issue(&challenge("c1", "a@x.io", 1), &message("m1", 100))
        .await
        .unwrap();
    let v = s.config_version().await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            let id = format!("{i:024}");
            redeem(
                &*s,
                "a@x.io",
                deciding(Decision::Consume, "c1", v),
                signing_in(&id, "a@x.io", true),
            )
            .await
        }));
    }
    let mut signed_in = 0;
    for t in tasks {
        match t.await.unwrap() {
            Redeemed::Counted {
                outcome: Outcome::SignedIn(SignIn::Ok { created: true, .. }),
                ..
            } => signed_in += 1,
            Redeemed::Counted {
                outcome: Outcome::AlreadyUsed,
                ..
            }
            | Redeemed::NotCounted(NotCounted::NoCode { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(signed_in, 1);
    assert_eq!(
        s.find_user("email", "a@x.io")
            .await
            .unwrap()
            .unwrap()
            .logins_count,
        1
    );
}

async fn sign_in_creates_then_updates_and_respects_blocks(s: &dyn Store) {
    let SignIn::Ok { user, created } = s
        .sign_in(
            &candidate("aaaaaaaaaaaaaaaaaaaaaaaa", "a@x.io"),
            "a@x.io",
            true,
            500,
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(created);
    assert_eq!(user.user_id, "email|aaaaaaaaaaaaaaaaaaaaaaaa");
    assert_eq!(user.logins_count, 1);
    let SignIn::Ok {
        user: again,
        created,
    } = s
        .sign_in(
            &candidate("bbbbbbbbbbbbbbbbbbbbbbbb", "a@x.io"),
            "a@x.io",
            true,
            600,
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(!created);
    assert_eq!(again.user_id, user.user_id, "an existing user keeps its id");
    assert_eq!(
        (again.logins_count, again.last_login, again.created_at),
        (2, Some(600), 500)
    );
    assert_eq!(
        s.find_user("email", "a@x.io")
            .await
            .unwrap()
            .unwrap()
            .user_id,
        user.user_id
    );
    assert_eq!(
        s.get_user(&user.user_id)
            .await
            .unwrap()
            .unwrap()
            .logins_count,
        2
    );

    assert!(s.set_user_blocked(&user.user_id, true, 700).await.unwrap());
    assert!(matches!(
        s.sign_in(
            &candidate("cccccccccccccccccccccccc", "a@x.io"),
            "a@x.io",
            true,
            800
        )
        .await
        .unwrap(),
        SignIn::Blocked
    ));
    assert_eq!(
        s.get_user(&user.user_id)
            .await
            .unwrap()
            .unwrap()
            .logins_count,
        2,
        "a blocked sign-in is not counted"
    );
    assert!(!s.set_user_blocked("email|nobody", true, 700).await.unwrap());

    assert!(matches!(
        s.sign_in(
            &candidate("dddddddddddddddddddddddd", "new@x.io"),
            "new@x.io",
            false,
            800
        )
        .await
        .unwrap(),
        SignIn::SignupDisabled
    ));
    assert!(s.find_user("email", "new@x.io").await.unwrap().is_none());
}

async fn concurrent_first_sign_ins_make_one_user(s: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..10 {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            let id = format!("{i:024x}");
            match s
                .sign_in(&candidate(&id, "race@x.io"), "race@x.io", true, 500)
                .await
                .unwrap()
            {
                SignIn::Ok { user, .. } => user.user_id,
                other => panic!("{other:?}"),
            }
        }));
    }
    let mut ids = HashSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let u = s.find_user("email", "race@x.io").await.unwrap().unwrap();
    assert_eq!(u.logins_count, 10);
}

async fn tokens_are_found_by_hash_and_refresh_tokens_detect_reuse(s: &dyn Store) {
    let at = AccessToken {
        token_hash: vec![1; 32],
        user_id: "email|u".into(),
        client_id: "app".into(),
        scope: "openid".into(),
        created_at: 1,
        expires_at: 100,
        grant_id: None,
    };
    s.insert_access_token(&at).await.unwrap();
    assert_eq!(
        s.find_access_token(&[1; 32])
            .await
            .unwrap()
            .unwrap()
            .user_id,
        "email|u"
    );
    assert!(s.find_access_token(&[2; 32]).await.unwrap().is_none());

    let rt = |h: u8| RefreshToken {
        token_hash: vec![h; 32],
        family_id: "fam".into(),
        user_id: "email|u".into(),
        client_id: "app".into(),
        scope: "openid offline_access".into(),
        audience: None,
        created_at: 1,
        expires_at: 1000,
    };
    assert!(s.insert_refresh_token(&rt(1)).await.unwrap());
    // another application cannot use it, nor burn it
    assert!(matches!(
        s.use_refresh_token(&[1; 32], "other-app", 5).await.unwrap(),
        RefreshUse::Unknown
    ));
    assert!(
        matches!(s.use_refresh_token(&[1; 32], "app", 5).await.unwrap(), RefreshUse::Fresh(t) if t.family_id == "fam")
    );
    s.insert_refresh_token(&rt(2)).await.unwrap();
    assert!(matches!(
        s.use_refresh_token(&[1; 32], "app", 6).await.unwrap(),
        RefreshUse::Reused(_)
    ));
    assert!(matches!(
        s.use_refresh_token(&[9; 32], "app", 6).await.unwrap(),
        RefreshUse::Unknown
    ));
    assert_eq!(s.revoke_refresh_family("fam", 7).await.unwrap(), 2);
    assert!(
        matches!(
            s.use_refresh_token(&[2; 32], "app", 8).await.unwrap(),
            RefreshUse::Reused(_)
        ),
        "revoked tokens no longer work"
    );
    // an expired token is unknown, and stays unused
    s.insert_refresh_token(&RefreshToken {
        token_hash: vec![3; 32],
        family_id: "f2".into(),
        expires_at: 100,
        ..rt(3)
    })
    .await
    .unwrap();
    assert!(matches!(
        s.use_refresh_token(&[3; 32], "app", 100).await.unwrap(),
        RefreshUse::Unknown
    ));
}

fn key(kid: &str) -> StoredKey {
    StoredKey {
        kid: kid.into(),
        alg: "RS256".into(),
        private_sealed: vec![1],
        public_jwk: "{}".into(),
        status: KeyStatus::Current,
        created_at: kid.len() as i64,
    }
}

async fn first_key_is_inserted_once_and_rotation_keeps_two(s: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..5 {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            s.insert_first_key(&key(&format!("k{i}"))).await.unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let keys = s.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 1, "exactly one first key wins");
    let first = keys[0].kid.clone();
    s.rotate_key(&key("second"), 10).await.unwrap();
    let keys = s.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(
        keys.iter()
            .find(|k| k.status == KeyStatus::Current)
            .unwrap()
            .kid,
        "second"
    );
    assert_eq!(
        keys.iter()
            .find(|k| k.status == KeyStatus::Previous)
            .unwrap()
            .kid,
        first
    );
    s.rotate_key(&key("third-key"), 20).await.unwrap();
    let kids: HashSet<String> = s
        .signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(
        kids,
        HashSet::from(["second".to_string(), "third-key".to_string()])
    );
}

async fn outbox_leases_retries_and_settles(s: &dyn Store) {
    for i in 0..3 {
        s.issue(
            &challenge(&format!("c{i}"), &format!("u{i}@x.io"), 1),
            &message(&format!("m{i}"), 100 + i),
        )
        .await
        .unwrap();
    }
    let got = s.claim_outbox("A", 200, 60, 2).await.unwrap();
    assert_eq!(
        got.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["m0", "m1"]
    );
    assert!(got.iter().all(|m| m.attempts == 1
        && m.payload == [1, 2, 3]
        && m.not_after == Some(m.created_at + 180)));
    let rest = s.claim_outbox("B", 200, 60, 10).await.unwrap();
    assert_eq!(
        rest.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["m2"],
        "leased messages are not claimed twice"
    );
    s.settle_outbox("m0", &OutboxOutcome::Delivered)
        .await
        .unwrap();
    s.settle_outbox(
        "m1",
        &OutboxOutcome::Retry {
            at: 300,
            error: "421".into(),
        },
    )
    .await
    .unwrap();
    assert!(
        s.claim_outbox("B", 250, 60, 10).await.unwrap().is_empty(),
        "m1 waits for its retry time, m2 is leased"
    );
    // B's lease on m2 ran out (it died): A takes it over, along with m1 now due.
    let again = s.claim_outbox("A", 300, 60, 10).await.unwrap();
    let ids: HashSet<&str> = again.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, HashSet::from(["m1", "m2"]));
    assert!(again.iter().all(|m| m.attempts == 2));
    s.settle_outbox(
        "m1",
        &OutboxOutcome::GiveUp {
            error: "550".into(),
        },
    )
    .await
    .unwrap();
    s.settle_outbox("m2", &OutboxOutcome::Delivered)
        .await
        .unwrap();
    assert_eq!(s.outbox_depth().await.unwrap(), 0);
}

async fn concurrent_claims_take_disjoint_messages(s: Arc<dyn Store>) {
    for i in 0..100 {
        s.issue(
            &challenge(&format!("c{i}"), &format!("u{i}@x.io"), 1),
            &message(&format!("m{i:03}"), 100),
        )
        .await
        .unwrap();
    }
    let mut tasks = Vec::new();
    for w in 0..4 {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = s.claim_outbox(&format!("w{w}"), 200, 60, 7).await.unwrap();
                if got.is_empty() {
                    break;
                }
                mine.extend(got.into_iter().map(|m| m.id));
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), 100, "every message claimed exactly once");
    assert_eq!(unique.len(), 100);
}

async fn rate_limit_windows_count_hits_atomically(s: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            s.hit_rate_limit("ip:1.2.3.4", 3600, 7_205).await.unwrap()
        }));
    }
    let mut counts = HashSet::new();
    for t in tasks {
        let w = t.await.unwrap();
        assert_eq!(w.resets_at, 10_800);
        counts.insert(w.count);
    }
    assert_eq!(counts, (1..=20).collect(), "every hit counted once");
    assert_eq!(
        s.peek_rate_limit("ip:1.2.3.4", 3600, 10_799)
            .await
            .unwrap()
            .count,
        20
    );
    assert_eq!(
        s.peek_rate_limit("ip:5.6.7.8", 3600, 10_799)
            .await
            .unwrap()
            .count,
        0
    );
    // the next window starts from zero
    assert_eq!(
        s.peek_rate_limit("ip:1.2.3.4", 3600, 10_800).await.unwrap(),
        WindowCount {
            count: 0,
            resets_at: 14_400
        }
    );
    assert_eq!(
        s.hit_rate_limit("ip:1.2.3.4", 3600, 10_800)
            .await
            .unwrap()
            .count,
        1
    );
    assert!(s.purge_expired(14_401).await.unwrap() >= 2);
}

async fn events_and_purge(s: &dyn Store) {
    for i in 0..3 {
        s.record_event(&Event {
            id: format!("e{i}"),
            at: i,
            kind: "s".into(),
            client_id: Some("app".into()),
            connection: None,
            user_id: None,
            ip: None,
            user_agent: None,
            description: format!("event {i}"),
        })
        .await
        .unwrap();
    }
    let ev = s.list_events(2).await.unwrap();
    assert_eq!(
        ev.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["e2", "e1"]
    );

    s.issue(&challenge("c1", "a@x.io", 1), &message("m1", 100))
        .await
        .unwrap();
    s.insert_access_token(&AccessToken {
        token_hash: vec![1; 32],
        user_id: "u".into(),
        client_id: "a".into(),
        scope: "".into(),
        created_at: 1,
        expires_at: 50,
        grant_id: None,
    })
    .await
    .unwrap();
    assert_eq!(
        s.purge_expired(100).await.unwrap(),
        1,
        "only the expired access token goes"
    );
    assert!(
        s.attempt("email", "a@x.io").await.unwrap().is_some(),
        "a code expired less than an hour ago stays"
    );
    assert!(s.purge_expired(280 + 3601).await.unwrap() >= 1);
    assert!(s.attempt("email", "a@x.io").await.unwrap().is_none());
}

async fn sessions_codes_and_tickets_are_single_use(s: &dyn Store) {
    // Sessions: found while live, gone after delete.
    let sess = Session {
        id_hash: vec![7; 32],
        user_id: "email|u".into(),
        created_at: 10,
        expires_at: 100,
        ip: Some("127.0.0.1".into()),
        user_agent: Some("UA".into()),
    };
    s.create_session(&sess).await.unwrap();
    assert_eq!(
        s.get_session(&[7; 32], 50).await.unwrap(),
        Some(sess.clone())
    );
    assert_eq!(s.get_session(&[7; 32], 100).await.unwrap(), None, "expired");
    assert!(s.delete_session(&[7; 32]).await.unwrap());
    assert_eq!(s.get_session(&[7; 32], 50).await.unwrap(), None);

    // Authorization codes: one Fresh, then Reused; expired ones are Unknown.
    let code = AuthCode {
        code_hash: vec![8; 32],
        grant_id: "g1".into(),
        client_id: "app".into(),
        user_id: "email|u".into(),
        redirect_uri: "https://app/cb".into(),
        scope: "openid".into(),
        audience: None,
        nonce: Some("n".into()),
        code_challenge: Some("ch".into()),
        code_challenge_method: Some("S256".into()),
        allow_refresh: false,
        created_at: 10,
        expires_at: 100,
    };
    s.insert_auth_code(&code).await.unwrap();
    assert!(
        matches!(
            s.use_auth_code(&[8; 32], 100).await.unwrap(),
            AuthCodeUse::Unknown
        ),
        "expired"
    );
    match s.use_auth_code(&[8; 32], 50).await.unwrap() {
        AuthCodeUse::Fresh(c) => assert_eq!(c, code),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.use_auth_code(&[8; 32], 51).await.unwrap(),
        AuthCodeUse::Reused(c) if c.grant_id == "g1"
    ));
    assert!(matches!(
        s.use_auth_code(&[9; 32], 51).await.unwrap(),
        AuthCodeUse::Unknown
    ));

    // Revoking a grant removes its access tokens and revokes its refresh family only.
    for (h, g) in [(1u8, Some("g1")), (2, Some("g2")), (3, None)] {
        s.insert_access_token(&AccessToken {
            token_hash: vec![h; 32],
            user_id: "email|u".into(),
            client_id: "app".into(),
            scope: "openid".into(),
            created_at: 1,
            expires_at: 1000,
            grant_id: g.map(str::to_string),
        })
        .await
        .unwrap();
    }
    s.insert_refresh_token(&RefreshToken {
        token_hash: vec![4; 32],
        family_id: "g1".into(),
        user_id: "email|u".into(),
        client_id: "app".into(),
        scope: "openid offline_access".into(),
        audience: None,
        created_at: 1,
        expires_at: 1000,
    })
    .await
    .unwrap();
    assert_eq!(s.revoke_grant("g1", 60).await.unwrap(), 2);
    assert!(s.find_access_token(&[1; 32]).await.unwrap().is_none());
    assert!(s.find_access_token(&[2; 32]).await.unwrap().is_some());
    assert!(s.find_access_token(&[3; 32]).await.unwrap().is_some());
    assert!(matches!(
        s.use_refresh_token(&[4; 32], "app", 61).await.unwrap(),
        RefreshUse::Reused(_)
    ));

    // Login tickets: taken once, never after expiry.
    let t = LoginTicket {
        ticket_hash: vec![5; 32],
        client_id: "app".into(),
        user_id: "email|u".into(),
        connection: "email".into(),
        co_id: "co".into(),
        verifier_hash: vec![6; 32],
        created_at: 10,
        expires_at: 100,
    };
    s.insert_login_ticket(&t).await.unwrap();
    assert_eq!(s.take_login_ticket(&[5; 32], 100).await.unwrap(), None);
    assert_eq!(s.take_login_ticket(&[5; 32], 50).await.unwrap(), Some(t));
    assert_eq!(s.take_login_ticket(&[5; 32], 50).await.unwrap(), None);
}

async fn a_checked_code_gets_its_attempt_back(s: &dyn Store) {
    s.issue(&challenge("c1", "r@x.io", 1), &message("m1", 1))
        .await
        .unwrap();
    let c = s.attempt("email", "r@x.io").await.unwrap().unwrap();
    assert_eq!(c.attempts, 1);
    assert_eq!(c.ip.as_deref(), Some("127.0.0.1"));
    s.refund_attempt(&c.id).await.unwrap();
    s.refund_attempt(&c.id).await.unwrap(); // never below zero
    let c = s.attempt("email", "r@x.io").await.unwrap().unwrap();
    assert_eq!(c.attempts, 1);
}

async fn strikes_grow_the_block_and_are_forgotten(s: &dyn Store) {
    assert_eq!(s.blocked_until("k", 1000).await.unwrap(), None);
    assert_eq!(s.add_strike("k", 1000, 60, 3600).await.unwrap(), 1060);
    assert_eq!(s.blocked_until("k", 1059).await.unwrap(), Some(1060));
    assert_eq!(s.blocked_until("k", 1060).await.unwrap(), None);
    assert_eq!(s.add_strike("k", 1100, 60, 3600).await.unwrap(), 1220);
    assert_eq!(s.add_strike("k", 1300, 60, 3600).await.unwrap(), 1540);
    // capped
    for _ in 0..10 {
        s.add_strike("k", 1600, 60, 3600).await.unwrap();
    }
    assert_eq!(s.blocked_until("k", 1600).await.unwrap(), Some(5200));
    // other keys are untouched; old strikes are forgotten
    assert_eq!(s.blocked_until("other", 1600).await.unwrap(), None);
    assert_eq!(
        s.add_strike("k", 1600 + 3601, 60, 3600).await.unwrap(),
        1600 + 3601 + 60
    );
}

async fn users_are_listed_searched_and_deleted(s: &dyn Store) {
    for (i, email) in ["ann@x.io", "bob@y.io", "an_n%@z.io"].iter().enumerate() {
        let u = User::new_email_user(&format!("{:024}", i), "email", email, 10 + i as i64);
        s.sign_in(&u, email, true, 10 + i as i64).await.unwrap();
    }
    let all = s.list_users("", 10).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].email.as_deref(), Some("an_n%@z.io"), "newest first");
    let found = s.list_users("ann", 10).await.unwrap();
    assert_eq!(
        found.len(),
        1,
        "LIKE wildcards in the search are literal: {found:?}"
    );
    assert_eq!(s.list_users("n%", 10).await.unwrap().len(), 1);
    assert_eq!(s.list_users("", 2).await.unwrap().len(), 2);
    let id = found[0].user_id.clone();
    s.create_session(&Session {
        id_hash: vec![3; 32],
        user_id: id.clone(),
        created_at: 1,
        expires_at: 1000,
        ip: None,
        user_agent: None,
    })
    .await
    .unwrap();
    s.issue(
        &NewChallenge {
            identifier: "ann@x.io".into(),
            ..challenge("c-del", "ann@x.io", 4)
        },
        &message("m-del", 1),
    )
    .await
    .unwrap();
    assert!(s.delete_user(&id).await.unwrap());
    assert!(!s.delete_user(&id).await.unwrap());
    assert!(
        s.attempt("email", "ann@x.io").await.unwrap().is_none(),
        "the pending code goes with the user"
    );
    assert!(s.get_user(&id).await.unwrap().is_none());
    assert!(
        s.get_session(&[3; 32], 5).await.unwrap().is_none(),
        "sessions go with the user"
    );
}

fn event(id: &str, at: i64) -> Event {
    Event {
        id: id.into(),
        at,
        kind: "s".into(),
        client_id: None,
        connection: None,
        user_id: None,
        ip: None,
        user_agent: None,
        description: format!("event {id}"),
    }
}

/// Events and delivered messages' deletes written together (group commit): every caller's row
/// is in the database when its call returns, and a bad row fails alone.
async fn concurrent_events_and_deletes_are_each_written_before_returning(s: Arc<dyn Store>) {
    s.record_event(&event("dup", 1)).await.unwrap();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..300 {
        let s = s.clone();
        calls.spawn(async move {
            let id = if i == 150 {
                "dup".to_string()
            } else {
                format!("e{i}")
            };
            let r = s.record_event(&event(&id, 10 + i)).await;
            // Written before the call returns: it is found at once.
            if r.is_ok() {
                let found = s
                    .find_events(&EventFilter {
                        limit: 1000,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                assert!(found.iter().any(|(_, e)| e.id == id), "{id} not found");
            }
            (i, r.is_ok())
        });
    }
    while let Some(r) = calls.join_next().await {
        let (i, ok) = r.unwrap();
        assert_eq!(ok, i != 150, "event {i}");
    }
    let all = s.list_events(1000).await.unwrap();
    assert_eq!(all.len(), 300); // 299 new ones and the first "dup"
    assert_eq!(
        all.iter()
            .filter(|e| e.id == "dup")
            .map(|e| e.at)
            .collect::<Vec<_>>(),
        [1]
    );

    for i in 0..200 {
        s.issue(
            &challenge(&format!("c{i}"), &format!("a{i}@x.io"), 1),
            &message(&format!("m{i}"), 100),
        )
        .await
        .unwrap();
    }
    assert_eq!(s.outbox_depth().await.unwrap(), 200);
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..150 {
        let s = s.clone();
        calls.spawn(async move {
            s.settle_outbox(&format!("m{i}"), &OutboxOutcome::Delivered)
                .await
                .unwrap();
        });
    }
    while let Some(r) = calls.join_next().await {
        r.unwrap();
    }
    assert_eq!(s.outbox_depth().await.unwrap(), 50);
    let left: Vec<String> = s
        .claim_outbox("A", 200, 60, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(left.len(), 50);
    assert!(
        left.iter()
            .all(|id| id[1..].parse::<usize>().unwrap() >= 150)
    );
}

macro_rules! suite {
    ($backend:ident) => {
        mod $backend {
            use super::*;
            const B: &str = stringify!($backend);

            #[tokio::test]
            async fn strikes_grow_the_block_and_are_forgotten() {
                let (s, _db) = open(B).await;
                super::strikes_grow_the_block_and_are_forgotten(&*s).await
            }
            #[tokio::test]
            async fn users_are_listed_searched_and_deleted() {
                let (s, _db) = open(B).await;
                super::users_are_listed_searched_and_deleted(&*s).await
            }
            #[tokio::test]
            async fn sessions_codes_and_tickets_are_single_use() {
                let (s, _db) = open(B).await;
                super::sessions_codes_and_tickets_are_single_use(&*s).await
            }
            #[tokio::test]
            async fn a_checked_code_gets_its_attempt_back() {
                let (s, _db) = open(B).await;
                super::a_checked_code_gets_its_attempt_back(&*s).await
            }
            #[tokio::test]
            async fn migrations_are_idempotent() {
                let (s, _db) = open(B).await;
                super::migrations_are_idempotent(&*s).await
            }
            #[tokio::test]
            async fn clients_and_connections_round_trip() {
                let (s, _db) = open(B).await;
                super::clients_and_connections_round_trip(&*s).await
            }
            #[tokio::test]
            async fn challenges_count_attempts_and_are_replaced_and_consumed_once() {
                let (s, _db) = open(B).await;
                super::challenges_count_attempts_and_are_replaced_and_consumed_once(&*s).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_attempts_are_all_counted_and_consume_has_one_winner() {
                let (s, _db) = open(B).await;
                super::concurrent_attempts_are_all_counted_and_consume_has_one_winner(s).await
            }
            #[tokio::test]
            async fn redeeming_counts_then_keeps_refunds_or_consumes_and_signs_in() {
                let (s, _db) = open(B).await;
                super::redeeming_counts_then_keeps_refunds_or_consumes_and_signs_in(&*s).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_redeems_sign_in_once() {
                let (s, _db) = open(B).await;
                super::concurrent_redeems_sign_in_once(s).await
            }
            #[tokio::test]
            async fn sign_in_creates_then_updates_and_respects_blocks() {
                let (s, _db) = open(B).await;
                super::sign_in_creates_then_updates_and_respects_blocks(&*s).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_first_sign_ins_make_one_user() {
                let (s, _db) = open(B).await;
                super::concurrent_first_sign_ins_make_one_user(s).await
            }
            #[tokio::test]
            async fn tokens_are_found_by_hash_and_refresh_tokens_detect_reuse() {
                let (s, _db) = open(B).await;
                super::tokens_are_found_by_hash_and_refresh_tokens_detect_reuse(&*s).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn first_key_is_inserted_once_and_rotation_keeps_two() {
                let (s, _db) = open(B).await;
                super::first_key_is_inserted_once_and_rotation_keeps_two(s).await
            }
            #[tokio::test]
            async fn outbox_leases_retries_and_settles() {
                let (s, _db) = open(B).await;
                super::outbox_leases_retries_and_settles(&*s).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_claims_take_disjoint_messages() {
                let (s, _db) = open(B).await;
                super::concurrent_claims_take_disjoint_messages(s).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn rate_limit_windows_count_hits_atomically() {
                let (s, _db) = open(B).await;
                super::rate_limit_windows_count_hits_atomically(s).await
            }
            #[tokio::test]
            async fn config_version_rises_with_every_change_to_applications_and_connections() {
                let (s, _db) = open(B).await;
                super::config_version_rises_with_every_change_to_applications_and_connections(&*s)
                    .await
            }
            #[tokio::test]
            async fn issuing_checks_the_version_and_picks_the_channel_in_one_go() {
                let (s, _db) = open(B).await;
                super::issuing_checks_the_version_and_picks_the_channel_in_one_go(&*s).await
            }
            #[tokio::test]
            async fn a_blocked_identity_gets_no_attempt_counted() {
                let (s, _db) = open(B).await;
                super::a_blocked_identity_gets_no_attempt_counted(&*s).await
            }
            #[tokio::test]
            async fn sealed_access_tokens_need_the_user_the_application_and_the_grant() {
                let (s, _db) = open(B).await;
                super::sealed_access_tokens_need_the_user_the_application_and_the_grant(&*s).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_events_and_deletes_are_each_written_before_returning() {
                let (s, _db) = open(B).await;
                super::concurrent_events_and_deletes_are_each_written_before_returning(s).await
            }
            #[tokio::test]
            async fn events_and_purge() {
                let (s, _db) = open(B).await;
                super::events_and_purge(&*s).await
            }
        }
    };
}

suite!(sqlite);
suite!(postgres);

#[tokio::test]
async fn unknown_url_schemes_and_unreachable_databases_fail_clearly() {
    let e = tessera_store::open("mysql://x/y", &PoolOptions::default())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("unsupported database URL scheme"), "{e}");
    let opts = PoolOptions {
        acquire_timeout_secs: 2,
        ..Default::default()
    };
    let e = tessera_store::open("postgres://postgres@127.0.0.1:1/none", &opts)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("cannot connect to PostgreSQL"), "{e}");
}

/// SQLite's log is copied back off the writer, and started over once it passes 16 MiB: under
/// a steady flow of writes it stays bounded (without the restart it grows with every write:
/// 900 MB in one 10-second benchmark run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_log_stays_bounded_under_steady_writes() {
    let (s, db) = open("sqlite").await;
    let wal = format!("{}-wal", db.url.trim_start_matches("sqlite://"));
    let size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    // Over 500 MiB of log pages: each event, with a 3 KiB description, fills a page of its own
    // and touches its indexes.
    let mut largest = 0;
    for i in 0..16_000 {
        s.record_event(&Event {
            id: format!("big{i:05}"),
            at: i,
            kind: "s".into(),
            client_id: None,
            connection: None,
            user_id: None,
            ip: None,
            user_agent: None,
            description: "x".repeat(3000),
        })
        .await
        .unwrap();
        largest = largest.max(size());
    }
    println!("largest log: {largest} bytes");
    assert!(largest > 0, "the database is in WAL mode");
    assert!(
        largest < 96 << 20,
        "the log grew to {largest} bytes while over 500 MiB were written"
    );
    assert_eq!(s.list_events(1).await.unwrap()[0].id, "big15999");
}
