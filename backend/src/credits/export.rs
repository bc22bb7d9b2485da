//! A wallet's whole filtered history as CSV, for spreadsheets: a header row, ISO 8601 times in
//! UTC, amounts as plain integers, RFC 4180 quoting, and text cells that a spreadsheet would run
//! as a formula (`=`, `+`, `-`, `@`, tab, carriage return first) neutralised with a leading `'`
//! (OWASP's advice). Numbers are written by the server, never from client text, so a negative
//! amount stays a number.
//!
//! The history is read in pages of [`PAGE`] entries, newest first as `GET /credits/ledger`
//! shows it, each page written out before the next is read: the export's memory does not grow
//! with the history, and no database connection is held while the client reads.

use chrono::SecondsFormat;
use futures_util::{Stream, TryStreamExt};
use sea_orm::{ColumnTrait, DatabaseConnection, QueryFilter, QueryOrder, QuerySelect};

use super::{
    error::CreditsError,
    history::{LedgerFilter, balance_after},
};
use crate::{domain::ledger::TransferKind, entities::transfers};

/// Entries per database read.
pub const PAGE: u64 = 200;

/// The header row.
pub const HEADER: &str =
    "created_at,id,kind,amount,balance_after,feature,quantity,description,hold_id,lot_id,metadata\r\n";

/// Appends a text cell: neutralised, then quoted if it must be.
fn text(out: &mut String, value: &str) {
    let neutralised;
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        neutralised = format!("'{value}");
        neutralised.as_str()
    } else {
        value
    };
    if value.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

fn number(out: &mut String, value: Option<i64>) {
    if let Some(value) = value {
        out.push_str(&value.to_string());
    }
}

/// Appends one entry's row, as the wallet sees it (amounts signed: in positive, out negative).
fn row(out: &mut String, wallet_id: uuid::Uuid, t: &transfers::Model) -> Result<(), CreditsError> {
    let kind = TransferKind::parse(&t.kind).ok_or_else(|| {
        CreditsError::Database(sea_orm::DbErr::Custom(format!(
            "the kind of {} is the unknown value {:?}",
            t.id, t.kind
        )))
    })?;
    let amount = if t.credit_account_id == wallet_id { t.amount } else { -t.amount };
    text(out, &t.created_at.to_rfc3339_opts(SecondsFormat::AutoSi, true));
    out.push(',');
    text(out, &t.id.to_string());
    out.push(',');
    text(out, kind.as_str());
    out.push(',');
    number(out, Some(amount));
    out.push(',');
    number(out, Some(balance_after(wallet_id, t)?));
    out.push(',');
    text(out, t.feature.as_deref().unwrap_or_default());
    out.push(',');
    number(out, t.quantity);
    out.push(',');
    text(out, t.description.as_deref().unwrap_or_default());
    out.push(',');
    text(out, &t.hold_id.map(|id| id.to_string()).unwrap_or_default());
    out.push(',');
    text(out, &t.lot_id.map(|id| id.to_string()).unwrap_or_default());
    out.push(',');
    text(out, &t.metadata.as_ref().map(|m| m.to_string()).unwrap_or_default());
    out.push_str("\r\n");
    Ok(())
}

enum Next {
    Header,
    /// The page of entries older than this `seq` (the newest page for `None`).
    Page(Option<i64>),
    Done,
}

/// The CSV, header first, as a stream of chunks (one per page). The filter was checked and the
/// wallet found before: a failure past this point can only cut the download short, and is logged.
pub fn ledger_csv(
    db: DatabaseConnection,
    filter: LedgerFilter,
) -> impl Stream<Item = Result<actix_web::web::Bytes, CreditsError>> + 'static {
    futures_util::stream::try_unfold(Next::Header, move |next| {
        let (db, filter) = (db.clone(), filter.clone());
        async move {
            let before = match next {
                Next::Header => return Ok(Some((HEADER.into(), Next::Page(None)))),
                Next::Page(before) => before,
                Next::Done => return Ok(None),
            };
            let mut select = filter.select();
            if let Some(seq) = before {
                select = select.filter(transfers::Column::Seq.lt(seq));
            }
            let page = select.order_by_desc(transfers::Column::Seq).limit(PAGE).all(&db).await?;
            let Some(last) = page.last() else { return Ok(None) };
            let then = if (page.len() as u64) < PAGE { Next::Done } else { Next::Page(Some(last.seq)) };
            let mut out = String::with_capacity(page.len() * 160);
            for transfer in &page {
                row(&mut out, filter.wallet_id, transfer)?;
            }
            Ok(Some((out.into(), then)))
        }
    })
    .inspect_err(|e| log::error!("ledger.csv: the export stopped part way: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(value: &str) -> String {
        let mut out = String::new();
        text(&mut out, value);
        out
    }

    #[test]
    fn text_cells_are_neutralised_then_quoted() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell("=HYPERLINK(\"http://x\")"), "\"'=HYPERLINK(\"\"http://x\"\")\"");
        assert_eq!(cell("+1"), "'+1");
        assert_eq!(cell("-2+3"), "'-2+3");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("\tx"), "'\tx");
        assert_eq!(cell("\rx"), "\"'\rx\"");
        assert_eq!(cell("a, b"), "\"a, b\"");
        assert_eq!(cell("two\nlines"), "\"two\nlines\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell(""), "");
        let mut out = String::new();
        number(&mut out, Some(-5));
        assert_eq!(out, "-5", "a negative amount stays a number");
    }
}
