//! Reading the books: a wallet's figures as of now, its history, and its usage.

use std::collections::HashMap;

use chrono::{DateTime, Duration, DurationRound, NaiveDate, NaiveTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, Select, sea_query::Expr,
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

/// What `/credits/ledger` and `/credits/ledger.csv` filter a wallet's history by, checked.
#[derive(Debug, Clone)]
pub struct LedgerFilter {
    pub wallet_id: Uuid,
    kind: Option<TransferKind>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

impl LedgerFilter {
    pub fn new(
        wallet_id: Uuid,
        kind: Option<&str>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Self, CreditsError> {
        let kind = match kind {
            Some(raw) => Some(TransferKind::parse(raw).ok_or_else(|| {
                let kinds: Vec<String> = TransferKind::ALL.iter().map(|k| format!("`{}`", k.as_str())).collect();
                invalid("kind", format!("must be one of {}, not `{raw}`", kinds.join(", ")))
            })?),
            None => None,
        };
        Ok(Self { wallet_id, kind, from, to })
    }

    /// The wallet's transfers that pass the filter, in no order yet.
    pub fn select(&self) -> Select<transfers::Entity> {
        let mut select = transfers::Entity::find().filter(wallet_transfers(self.wallet_id));
        if let Some(kind) = self.kind {
            select = select.filter(transfers::Column::Kind.eq(kind.as_str()));
        }
        if let Some(from) = self.from {
            select = select.filter(transfers::Column::CreatedAt.gte(from));
        }
        if let Some(to) = self.to {
            select = select.filter(transfers::Column::CreatedAt.lt(to));
        }
        select
    }
}

/// Transfers into or out of the wallet.
fn wallet_transfers(wallet_id: Uuid) -> Condition {
    Condition::any()
        .add(transfers::Column::DebitAccountId.eq(wallet_id))
        .add(transfers::Column::CreditAccountId.eq(wallet_id))
}

/// The wallet's balance right after a transfer of its (the core writes it on the wallet's side).
pub fn balance_after(wallet_id: Uuid, transfer: &transfers::Model) -> Result<i64, CreditsError> {
    let after = if transfer.credit_account_id == wallet_id {
        transfer.credit_balance_after
    } else {
        transfer.debit_balance_after
    };
    after.ok_or_else(|| {
        CreditsError::Database(DbErr::Custom(format!("transfer {} has no balance after for its wallet", transfer.id)))
    })
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
    let mut select = LedgerFilter::new(wallet.id, query.kind.as_deref(), query.from, query.to)?.select();
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
    input_tokens: Option<i64>,
    cached_input_tokens: Option<i64>,
    output_tokens: Option<i64>,
}

/// The SQL that reads one of an LLM spend's token counts (`metadata.llm.<field>`).
fn token_sum(backend: DbBackend, field: &str) -> String {
    match backend {
        DbBackend::Postgres => format!("CAST(SUM(CAST(metadata->'llm'->>'{field}' AS BIGINT)) AS BIGINT)"),
        _ => format!("CAST(SUM(json_extract(metadata, '$.llm.{field}')) AS BIGINT)"),
    }
}

/// Spending aggregated by day (UTC) or by feature over a range.
pub async fn usage(ledger: &Ledger, user_id: Uuid, query: UsageQuery) -> Result<UsageResponse, CreditsError> {
    let db = ledger.db();
    let to = query.to.unwrap_or_else(|| ledger.clock().now());
    let from = query.from.unwrap_or(to - Duration::days(30));
    if from >= to {
        return Err(invalid("from", "must be before to"));
    }
    if to - from > Duration::days(400) {
        return Err(invalid("from", "may be at most 400 days before to"));
    }
    let group_by = query.group_by.unwrap_or_else(|| "day".to_owned());
    let by_model = group_by == "model";
    let key_expr = match (group_by.as_str(), db::backend(db)) {
        ("feature", _) => "COALESCE(feature, 'unpriced')",
        // LLM spends carry the feature `llm.<model>`.
        ("model", _) => "substr(feature, 5)",
        ("day", DbBackend::Postgres) => "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        ("day", _) => "substr(created_at, 1, 10)",
        _ => return Err(invalid("group_by", "must be `day`, `feature` or `model`")),
    };
    let wallet = store::find_wallet(db, user_id).await?.ok_or(CreditsError::WalletNotFound)?;
    let backend = db::backend(db);
    let tokens = |field: &str| if by_model { token_sum(backend, field) } else { "CAST(NULL AS BIGINT)".to_owned() };
    // A capture posts a spend too; both are usage.
    let mut select = transfers::Entity::find()
        .select_only()
        .column_as(Expr::cust(key_expr), "key")
        .column_as(Expr::cust("CAST(SUM(amount) AS BIGINT)"), "credits")
        .column_as(Expr::cust("COUNT(*)"), "spends")
        .column_as(Expr::cust(tokens("input_tokens")), "input_tokens")
        .column_as(Expr::cust(tokens("cached_input_tokens")), "cached_input_tokens")
        .column_as(Expr::cust(tokens("output_tokens")), "output_tokens");
    if by_model {
        select = select.filter(transfers::Column::Feature.like("llm.%"));
    }
    let rows = select
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
            input_tokens: by_model.then(|| r.input_tokens.unwrap_or_default()),
            cached_input_tokens: by_model.then(|| r.cached_input_tokens.unwrap_or_default()),
            output_tokens: by_model.then(|| r.output_tokens.unwrap_or_default()),
        })
        .collect();
    Ok(UsageResponse { group_by, from, to, total_credits: buckets.iter().map(|b| b.credits).sum(), buckets })
}

impl BalanceInterval {
    fn parse(raw: Option<&str>) -> Result<Self, CreditsError> {
        match raw {
            None | Some("day") => Ok(Self::Day),
            Some("hour") => Ok(Self::Hour),
            Some(other) => Err(invalid("interval", format!("must be `day` or `hour`, not `{other}`"))),
        }
    }

    /// How many points a history without `from` has: the last 30 days, or the last 24 hours.
    fn default_points(self) -> i32 {
        match self {
            Self::Day => 30,
            Self::Hour => 24,
        }
    }

    fn step(self) -> Duration {
        match self {
            Self::Day => Duration::days(1),
            Self::Hour => Duration::hours(1),
        }
    }

    /// The longest range it may cover.
    fn max_range(self) -> Duration {
        match self {
            Self::Day => Duration::days(400),
            Self::Hour => Duration::days(7),
        }
    }

    /// The start of the day or hour `at` falls in.
    fn floor(self, at: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Self::Day => at.date_naive().and_time(NaiveTime::MIN).and_utc(),
            Self::Hour => at.duration_trunc(Duration::hours(1)).unwrap_or(at),
        }
    }

    /// SQL naming the day (`2026-01-31`) or hour (`2026-01-31 13`) of `created_at`, in UTC.
    fn bucket_sql(self, backend: DbBackend) -> &'static str {
        match (self, backend) {
            (Self::Day, DbBackend::Postgres) => "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
            (Self::Hour, DbBackend::Postgres) => "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24')",
            (Self::Day, _) => "substr(created_at, 1, 10)",
            (Self::Hour, _) => "substr(created_at, 1, 10) || ' ' || substr(created_at, 12, 2)",
        }
    }

    /// The start of the bucket `bucket_sql` named.
    fn bucket_start(self, key: &str) -> Option<DateTime<Utc>> {
        let day = NaiveDate::parse_from_str(key.get(..10)?, "%Y-%m-%d").ok()?;
        let hour = match self {
            Self::Day => 0,
            Self::Hour => key.get(11..13)?.parse().ok()?,
        };
        Some(day.and_hms_opt(hour, 0, 0)?.and_utc())
    }
}

/// A time a client sent: RFC 3339, or a date meaning its midnight (UTC).
fn parse_instant(field: &'static str, raw: &str) -> Result<DateTime<Utc>, CreditsError> {
    if let Ok(at) = raw.trim().parse::<DateTime<Utc>>() {
        return Ok(at);
    }
    if let Ok(day) = NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d") {
        return Ok(day.and_time(NaiveTime::MIN).and_utc());
    }
    Err(invalid(
        field,
        "must be a date and time such as 2026-01-31T12:00:00Z (RFC 3339; in a URL, write `+` as `%2B`) or a date \
         such as 2026-01-31",
    ))
}

#[derive(Debug, FromQueryResult)]
struct BucketRow {
    key: Option<String>,
    last_seq: Option<i64>,
    entries: i64,
}

/// The wallet's balance at the end of each day or hour of a range, from the ledger's
/// `balance_after`: the last entry of each bucket gives its balance, a bucket without entries
/// carries the one before over, and the last entry before the range gives the opening balance.
/// Three queries, however long the history: one for the opening balance, one that finds each
/// bucket's last entry, one that reads those entries.
pub async fn balance_history(
    ledger: &Ledger,
    user_id: Uuid,
    query: BalanceHistoryQuery,
) -> Result<BalanceHistory, CreditsError> {
    let (db, now) = (ledger.db(), ledger.clock().now());
    let interval = BalanceInterval::parse(query.interval.as_deref())?;
    let to = match query.to.as_deref() {
        Some(raw) => parse_instant("to", raw)?.min(now),
        None => now,
    };
    let asked_from = match query.from.as_deref() {
        Some(raw) => parse_instant("from", raw)?,
        None => {
            let last = interval.floor(to - Duration::microseconds(1));
            last - interval.step() * (interval.default_points() - 1)
        }
    };
    if asked_from > now {
        return Err(invalid("from", "must not be in the future"));
    }
    if asked_from >= to {
        return Err(invalid("from", "must be before to"));
    }
    if to - asked_from > interval.max_range() {
        return Err(match interval {
            BalanceInterval::Day => invalid("from", "may be at most 400 days before to"),
            BalanceInterval::Hour => {
                invalid("interval", "`hour` covers ranges of at most 7 days; use `day` for longer ranges")
            }
        });
    }
    let from = interval.floor(asked_from);
    let wallet = store::find_wallet(db, user_id).await?.ok_or(CreditsError::WalletNotFound)?;
    let before = transfers::Entity::find()
        .filter(wallet_transfers(wallet.id))
        .filter(transfers::Column::CreatedAt.lt(from))
        .order_by_desc(transfers::Column::Seq)
        .one(db)
        .await?;
    let opening_balance = match &before {
        Some(transfer) => balance_after(wallet.id, transfer)?,
        None => 0,
    };
    let bucket = interval.bucket_sql(db::backend(db));
    // A wallet's transfers are numbered in the order its balance moved (each is written under the
    // wallet's lock), so a bucket's highest `seq` is its last balance.
    let rows = transfers::Entity::find()
        .select_only()
        .column_as(Expr::cust(bucket), "key")
        .column_as(Expr::cust("MAX(seq)"), "last_seq")
        .column_as(Expr::cust("COUNT(*)"), "entries")
        .filter(wallet_transfers(wallet.id))
        .filter(transfers::Column::CreatedAt.gte(from))
        .filter(transfers::Column::CreatedAt.lt(to))
        .group_by(Expr::cust(bucket))
        .into_model::<BucketRow>()
        .all(db)
        .await?;
    let seqs: Vec<i64> = rows.iter().filter_map(|r| r.last_seq).collect();
    let last_entries: HashMap<i64, transfers::Model> = if seqs.is_empty() {
        HashMap::new()
    } else {
        transfers::Entity::find()
            .filter(transfers::Column::Seq.is_in(seqs))
            .all(db)
            .await?
            .into_iter()
            .map(|t| (t.seq, t))
            .collect()
    };
    let mut buckets: HashMap<DateTime<Utc>, (i64, i64)> = HashMap::new();
    for row in rows {
        let key = row.key.unwrap_or_default();
        let start = interval.bucket_start(&key).ok_or_else(|| {
            CreditsError::Database(DbErr::Custom(format!("cannot read the bucket {key:?} of a balance history")))
        })?;
        let last = row.last_seq.and_then(|seq| last_entries.get(&seq));
        let balance = match last {
            Some(transfer) => balance_after(wallet.id, transfer)?,
            None => continue,
        };
        buckets.insert(start, (balance, row.entries));
    }
    let mut points = Vec::new();
    let (mut start, mut balance) = (from, opening_balance);
    while start < to {
        let entries = match buckets.get(&start) {
            Some(&(after, entries)) => {
                balance = after;
                entries
            }
            None => 0,
        };
        points.push(BalancePoint { start, balance, entries });
        start += interval.step();
    }
    Ok(BalanceHistory { interval, from, to, opening_balance, points })
}
