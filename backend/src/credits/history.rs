//! Reading the books: a wallet's figures as of now, its history, and its usage.

use std::collections::HashMap;

use chrono::Duration;
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use super::{
    batch::Ledger,
    dto::*,
    error::{CreditsError, invalid},
    store,
};
use crate::{
    db,
    domain::ledger::TransferKind,
    entities::{accounts, lots, transfers},
};

/// The wallet's figures as of now, counting expired lots and holds as gone even before the
/// expiry job has posted them. Writes nothing.
pub async fn balance(ledger: &Ledger, user_id: Uuid) -> Result<BalanceResponse, CreditsError> {
    let (wallet, mut expiring) = settled(ledger, user_id).await?;
    expiring.sort_by_key(|lot| lot.expires_at);
    expiring.truncate(5);
    Ok(BalanceResponse {
        wallet: WalletBalance::of(&wallet),
        expiring_soon: expiring.into_iter().map(LotView::try_from).collect::<Result<_, _>>()?,
    })
}

/// The wallet as it stands now, with what time has made due (expired lots, overdue holds)
/// taken off as the next write will post it, without writing; and its lots that will expire.
pub async fn settled(ledger: &Ledger, user_id: Uuid) -> Result<(accounts::Model, Vec<lots::Model>), CreditsError> {
    let (db, now) = (ledger.db(), ledger.clock().now());
    let mut wallet = store::find_wallet(db, user_id).await?.ok_or(CreditsError::WalletNotFound)?;
    let live = store::lots_with_credits(db, wallet.id).await?;
    let mut expiring = Vec::new();
    for lot in live {
        match lot.expires_at {
            Some(at) if at <= now => wallet.balance -= lot.remaining,
            Some(_) => expiring.push(lot),
            None => {}
        }
    }
    if wallet.held > 0 {
        let overdue = store::overdue_holds(wallet.id, now).all(db).await?;
        wallet.held -= overdue.iter().map(|h| h.amount).sum::<i64>();
    }
    Ok((wallet, expiring))
}

/// Encodes a ledger position as an opaque cursor.
fn encode_cursor(seq: i64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("s:{seq}"))
}

fn decode_cursor(cursor: &str) -> Result<i64, CreditsError> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| invalid("cursor", "is not a cursor this server issued"))?;
    String::from_utf8(bytes)
        .ok()
        .and_then(|s| s.strip_prefix("s:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| invalid("cursor", "is not a cursor this server issued"))
}

/// The caller's history, newest first.
pub async fn list_ledger(
    db: &DatabaseConnection,
    user_id: Uuid,
    query: LedgerQuery,
) -> Result<LedgerPage, CreditsError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(invalid("limit", "must be between 1 and 200"));
    }
    let wallet = store::find_wallet(db, user_id).await?.ok_or(CreditsError::WalletNotFound)?;
    let mut select = transfers::Entity::find().filter(
        Condition::any()
            .add(transfers::Column::DebitAccountId.eq(wallet.id))
            .add(transfers::Column::CreditAccountId.eq(wallet.id)),
    );
    if let Some(kind) = &query.kind {
        if TransferKind::parse(kind).is_none() {
            return Err(invalid("kind", format!("`{kind}` is not a transfer kind")));
        }
        select = select.filter(transfers::Column::Kind.eq(kind.clone()));
    }
    if let Some(from) = query.from {
        select = select.filter(transfers::Column::CreatedAt.gte(from));
    }
    if let Some(to) = query.to {
        select = select.filter(transfers::Column::CreatedAt.lt(to));
    }
    if let Some(cursor) = &query.cursor {
        select = select.filter(transfers::Column::Seq.lt(decode_cursor(cursor)?));
    }
    let mut rows = select.order_by_desc(transfers::Column::Seq).limit(limit + 1).all(db).await?;
    let next_cursor = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|t| encode_cursor(t.seq))
    } else {
        None
    };
    let ids: Vec<Uuid> = rows.iter().map(|t| t.id).collect();
    let mut movements: HashMap<Uuid, Vec<LotMovementView>> = HashMap::new();
    for m in store::movements_of(db, &ids).await? {
        movements.entry(m.transfer_id).or_default().push(LotMovementView { lot_id: m.lot_id, amount: m.amount });
    }
    let entries = rows
        .into_iter()
        .map(|t| {
            let incoming = t.credit_account_id == wallet.id;
            let kind = TransferKind::parse(&t.kind).ok_or_else(|| {
                CreditsError::Database(DbErr::Custom(format!("the kind of {} is the unknown value {:?}", t.id, t.kind)))
            })?;
            Ok(LedgerEntry {
                id: t.id,
                kind,
                amount: if incoming { t.amount } else { -t.amount },
                balance_after: if incoming { t.credit_balance_after } else { t.debit_balance_after },
                description: t.description,
                feature: t.feature,
                quantity: t.quantity,
                metadata: t.metadata,
                hold_id: t.hold_id,
                lot_id: t.lot_id,
                created_at: t.created_at,
                lots: movements.remove(&t.id).unwrap_or_default(),
            })
        })
        .collect::<Result<_, CreditsError>>()?;
    Ok(LedgerPage { entries, next_cursor })
}

#[derive(Debug, FromQueryResult)]
struct UsageRow {
    key: Option<String>,
    credits: Option<i64>,
    spends: i64,
}

/// Spending aggregated by day (UTC) or by feature over a range.
pub async fn usage(ledger: &Ledger, user_id: Uuid, query: UsageQuery) -> Result<UsageResponse, CreditsError> {
    let db = ledger.db();
    let to = query.to.unwrap_or_else(|| ledger.clock().now());
    let from = query.from.unwrap_or(to - Duration::days(30));
    if from >= to {
        return Err(invalid("from", "must be before `to`"));
    }
    if to - from > Duration::days(400) {
        return Err(invalid("from", "the range may span at most 400 days"));
    }
    let group_by = query.group_by.unwrap_or_else(|| "day".to_owned());
    let key_expr = match (group_by.as_str(), db::backend(db)) {
        ("feature", _) => "COALESCE(feature, 'unpriced')",
        ("day", DbBackend::Postgres) => "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        ("day", _) => "substr(created_at, 1, 10)",
        _ => return Err(invalid("group_by", "must be `day` or `feature`")),
    };
    let wallet = store::find_wallet(db, user_id).await?.ok_or(CreditsError::WalletNotFound)?;
    // A capture posts a spend too; both are usage.
    let rows = transfers::Entity::find()
        .select_only()
        .column_as(Expr::cust(key_expr), "key")
        .column_as(Expr::cust("CAST(SUM(amount) AS BIGINT)"), "credits")
        .column_as(Expr::cust("COUNT(*)"), "spends")
        .filter(transfers::Column::DebitAccountId.eq(wallet.id))
        .filter(transfers::Column::Kind.eq(TransferKind::Spend.as_str()))
        .filter(transfers::Column::CreatedAt.gte(from))
        .filter(transfers::Column::CreatedAt.lt(to))
        .group_by(Expr::cust(key_expr))
        .order_by_asc(Expr::cust(key_expr))
        .into_model::<UsageRow>()
        .all(db)
        .await?;
    let buckets: Vec<UsageBucket> = rows
        .into_iter()
        .map(|r| UsageBucket {
            key: r.key.unwrap_or_default(),
            credits: r.credits.unwrap_or_default(),
            spends: r.spends,
        })
        .collect();
    Ok(UsageResponse { group_by, from, to, total_credits: buckets.iter().map(|b| b.credits).sum(), buckets })
}
