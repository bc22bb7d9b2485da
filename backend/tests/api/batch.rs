//! Spends run in batches (group commit): each spend in a batch is answered as if it ran alone,
//! in order, and batches on different connections never deadlock.

use std::sync::Arc;

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate::{
    credits::{
        CreditsError, Outcome,
        spend::{self, Charge, PricedSpend, SpendCommand, SpendResult},
        writer,
    },
    db,
    domain::{Credits, IdempotencyKey},
    idempotency::IdempotentRequest,
};
use uuid::Uuid;

use crate::{
    both,
    helpers::{Backend, TestApp},
};

both!(
    a_batch_answers_each_spend_as_if_it_ran_alone,
    spends_under_load_are_batched_and_exact,
    a_failed_batch_writes_nothing_and_the_next_one_commits
);

fn request(user: Uuid, key: &str, amount: i64) -> IdempotentRequest {
    IdempotentRequest {
        scope: format!("test:{user}"),
        key: IdempotencyKey::parse(key).unwrap(),
        // What the handler fingerprints: the request. Here the amount stands for it.
        fingerprint: format!("amount={amount}"),
    }
}

async fn priced(app: &TestApp, amount: i64) -> PricedSpend {
    let command = SpendCommand {
        charge: Charge::Amount(Credits::new(amount).unwrap()),
        description: Some(format!("batched {amount}")),
        metadata: None,
    };
    PricedSpend::of(&app.db, command).await.unwrap()
}

/// Runs spends as one batch, in order, as the batch runners do.
async fn spend_together(app: &TestApp, spends: Vec<(Uuid, IdempotentRequest, PricedSpend)>) -> Vec<SpendResult> {
    let commands = spends.iter().map(|(user, request, spend)| spend.command(*user, request)).collect();
    app.ledger.apply_together(commands).await.into_iter().map(spend::spent).collect()
}

fn fresh(answer: &SpendResult) -> Value {
    match answer {
        Ok(Outcome::Fresh(response)) => serde_json::to_value(response).unwrap(),
        Ok(Outcome::Replayed(_)) => panic!("expected a fresh spend, got a replay"),
        Err(e) => panic!("expected a fresh spend, got {e}"),
    }
}

async fn a_batch_answers_each_spend_as_if_it_ran_alone(app: TestApp) {
    let alice = app.user().await;
    let bob = app.user().await;
    app.grant(&alice, 8).await;
    let expires = app.clock.now() + chrono::Duration::milliseconds(800);
    let body = json!({ "user_id": bob.id, "amount": 5, "reason": "test", "expires_at": expires });
    let res = app.post_admin("/api/v1/credits/grant", Some(&Uuid::new_v4().to_string()), &body).await;
    assert_eq!(res.status(), StatusCode::OK);
    app.grant(&bob, 10).await;
    // Bob's 5 expire; nothing has posted the expiry yet.
    app.clock.advance(chrono::Duration::milliseconds(1100));
    let nobody = Uuid::now_v7();

    let spends = vec![
        (alice.id, request(alice.id, "k1", 5), priced(&app, 5).await),
        // Alice has 3 left after the spend before it in the same batch.
        (alice.id, request(alice.id, "k2", 5), priced(&app, 5).await),
        // A retry of the first spend, in the same batch: its first answer.
        (alice.id, request(alice.id, "k1", 5), priced(&app, 5).await),
        // The first key with another request.
        (alice.id, request(alice.id, "k1", 6), priced(&app, 6).await),
        // Bob's expired lot is settled first (on PostgreSQL, alone after the batch).
        (bob.id, request(bob.id, "k1", 4), priced(&app, 4).await),
        (nobody, request(nobody, "k1", 1), priced(&app, 1).await),
        // Refused: more than Bob has; it must not undo the expiry the spend before it posted.
        (bob.id, request(bob.id, "k3", 100), priced(&app, 100).await),
        (alice.id, request(alice.id, "k4", 3), priced(&app, 3).await),
    ];
    let answers = spend_together(&app, spends).await;
    assert_eq!(answers.len(), 8);

    let first = fresh(&answers[0]);
    assert_eq!(first["balance"]["balance"], 3);
    assert_eq!(first["transfer"]["amount"], 5);
    match &answers[1] {
        Err(CreditsError::InsufficientCredits { available: 3, requested: 5 }) => {}
        other => panic!("expected 402 with 3 available, got {:?}", other.as_ref().map(|_| ())),
    }
    match &answers[2] {
        Ok(Outcome::Replayed(stored)) => {
            assert_eq!(stored.status, 200);
            assert_eq!(stored.body, first, "the retry replays the first answer exactly");
        }
        other => panic!("expected a replay, got {:?}", other.as_ref().map(|_| ())),
    }
    assert!(matches!(answers[3], Err(CreditsError::IdempotencyKeyReused)), "the key with another request: 409");
    let bobs = fresh(&answers[4]);
    assert_eq!(bobs["balance"]["balance"], 6, "5 expired, then 4 were spent");
    assert!(matches!(answers[5], Err(CreditsError::WalletNotFound)));
    match &answers[6] {
        Err(CreditsError::InsufficientCredits { available: 6, requested: 100 }) => {}
        other => panic!("expected 402 with 6 available, got {:?}", other.as_ref().map(|_| ())),
    }
    assert_eq!(fresh(&answers[7])["balance"]["balance"], 0);

    assert_eq!(app.balance(&alice).await["balance"], 0);
    assert_eq!(app.balance(&bob).await["balance"], 6);
    assert_eq!(app.count("transfers WHERE kind = 'spend'").await, 3);
    assert_eq!(app.count("transfers WHERE kind = 'expiry'").await, 1);
    assert_eq!(app.count("idempotency_keys").await, 3 + 3, "three grants and three spends stored their answers");
    app.assert_reconciled().await;

    // Run again, the whole batch replays or is refused the same way, and writes nothing.
    let before = app.ledger_counts().await;
    let again = spend_together(
        &app,
        vec![
            (alice.id, request(alice.id, "k1", 5), priced(&app, 5).await),
            (bob.id, request(bob.id, "k1", 4), priced(&app, 4).await),
            (alice.id, request(alice.id, "k2", 5), priced(&app, 5).await),
        ],
    )
    .await;
    match &again[0] {
        Ok(Outcome::Replayed(stored)) => assert_eq!(stored.body, first),
        _ => panic!("expected alice's replay"),
    }
    match &again[1] {
        Ok(Outcome::Replayed(stored)) => assert_eq!(stored.body, bobs),
        _ => panic!("expected bob's replay"),
    }
    assert!(matches!(again[2], Err(CreditsError::InsufficientCredits { available: 0, requested: 5 })));
    assert_eq!(app.ledger_counts().await, before);
}

/// Many users spending at once through the server: every spend is answered once, exactly, and
/// spends really do share transactions (fewer distinct commit times than spends).
async fn spends_under_load_are_batched_and_exact(app: TestApp) {
    let app = Arc::new(app);
    let mut users = Vec::new();
    for _ in 0..4 {
        let user = app.user().await;
        app.grant(&user, 100).await;
        users.push(user);
    }
    let results = join_all((0..240).map(|i| {
        let app = app.clone();
        let user = users[i % users.len()].clone();
        async move {
            let res = app.spend(&user, &format!("load-{i}"), json!({ "amount": 1 })).await;
            (res.status(), res.json::<Value>().await.unwrap())
        }
    }))
    .await;
    for (status, body) in &results {
        assert_eq!(*status, StatusCode::OK, "{body}");
    }
    for user in &users {
        assert_eq!(app.balance(user).await["balance"], 40);
    }
    assert_eq!(app.count("transfers WHERE kind = 'spend'").await, 240);
    // A batch stamps all its transfers with one time; spends alone would each have their own.
    let batches = app.count("(SELECT DISTINCT created_at FROM transfers WHERE kind = 'spend') AS t").await;
    assert!(batches < 240, "240 concurrent spends went in {batches} transactions");
    app.assert_reconciled().await;
}

/// PostgreSQL: two batches naming the same wallets in opposite orders, again and again at once.
/// Each locks its wallets in account order before spending, so neither waits on the other in a
/// cycle (which PostgreSQL would break by failing one of them with a deadlock error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_batches_never_deadlock() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    let users = [app.user().await, app.user().await, app.user().await];
    for user in &users {
        app.grant(user, 10_000).await;
    }
    let spend = priced(&app, 1).await;
    for round in 0..40 {
        let calls = (0..2).map(|side| {
            let (db, clock) = (app.db.clone(), app.clock.clone());
            let spend = spend.clone();
            let order: Vec<Uuid> = if side == 0 {
                users.iter().map(|u| u.id).collect()
            } else {
                users.iter().rev().map(|u| u.id).collect()
            };
            async move {
                let requests: Vec<(Uuid, IdempotentRequest)> = (0..12)
                    .map(|n| {
                        let user = order[n % order.len()];
                        (user, request(user, &format!("r{round}-s{side}-n{n}"), 1))
                    })
                    .collect();
                let commands: Vec<_> = requests.iter().map(|(user, request)| spend.command(*user, request)).collect();
                let txn = db::begin_write(&db).await?;
                let verdicts = writer::apply_in(&txn, &commands, clock.now()).await?;
                txn.commit().await?;
                Ok::<_, sea_orm::DbErr>(verdicts.into_iter().map(spend::spent).collect::<Vec<_>>())
            }
        });
        for outcome in join_all(calls).await {
            let outcomes = outcome.unwrap_or_else(|e| panic!("round {round}: a batch failed: {e}"));
            assert_eq!(outcomes.len(), 12);
            assert!(outcomes.iter().all(|o| matches!(o, Ok(Outcome::Fresh(_)))), "round {round}");
        }
    }
    for user in &users {
        assert_eq!(app.balance(user).await["balance"], 10_000 - 40 * 2 * 4);
    }
    app.assert_reconciled().await;
}

/// A batch that fails half-way (here a wallet whose lots hold fewer credits than its balance says,
/// found only when the batch takes from them) commits nothing, hands every spend to the general
/// path, and leaves the connection out of any transaction: the spends after it commit, as a
/// connection of the test's own sees.
async fn a_failed_batch_writes_nothing_and_the_next_one_commits(app: TestApp) {
    use sea_orm::{ColumnTrait, Database, EntityTrait, QueryFilter, sea_query::Expr};
    use tollgate::entities::{accounts, lots};

    let alice = app.user().await;
    let bob = app.user().await;
    app.grant(&alice, 10).await;
    app.grant(&bob, 10).await;
    let alice_wallet = wallet_id(&app.db, alice.id).await;
    lots::Entity::update_many()
        .col_expr(lots::Column::Remaining, Expr::value(5))
        .filter(lots::Column::AccountId.eq(alice_wallet))
        .exec(&app.db)
        .await
        .unwrap();
    let transfers_before = app.count("transfers").await;

    let spends = vec![
        (bob.id, request(bob.id, "b1", 3), priced(&app, 3).await),
        (alice.id, request(alice.id, "a1", 8), priced(&app, 8).await),
    ];
    let answers = spend_together(&app, spends).await;
    // Bob's spend, run alone after the batch failed, goes through; Alice's fails alone too.
    assert_eq!(fresh(&answers[0])["balance"]["balance"], 7);
    assert!(matches!(answers[1], Err(CreditsError::Database(_))), "{:?}", answers[1].as_ref().err());
    assert_eq!(app.count("transfers").await, transfers_before + 1);
    assert_eq!(app.balance(&alice).await["balance"], 10);

    let answers = spend_together(&app, vec![(bob.id, request(bob.id, "b2", 2), priced(&app, 2).await)]).await;
    assert_eq!(fresh(&answers[0])["balance"]["balance"], 5);
    let own = Database::connect(&app.database_url).await.unwrap();
    let bob_wallet =
        accounts::Entity::find().filter(accounts::Column::UserId.eq(bob.id)).one(&own).await.unwrap().unwrap();
    assert_eq!(bob_wallet.balance, 5, "the spends after the failed batch are committed");
    let alice_lots = lots::Entity::find().filter(lots::Column::AccountId.eq(alice_wallet)).all(&own).await.unwrap();
    assert_eq!(alice_lots.iter().map(|l| l.remaining).sum::<i64>(), 5, "the failed batch took nothing");
    own.close().await.unwrap();
}

async fn wallet_id(db: &sea_orm::DatabaseConnection, user: Uuid) -> Uuid {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    use tollgate::entities::accounts;
    accounts::Entity::find().filter(accounts::Column::UserId.eq(user)).one(db).await.unwrap().unwrap().id
}
