// Formatting of money, credits and dates. Each takes an optional locale (the browser's by default)
// so that tests can pin one.

const numberFormats = new Map<string, Intl.NumberFormat>();

function cachedNumberFormat(locale: string | undefined, options: Intl.NumberFormatOptions): Intl.NumberFormat {
  const key = `${locale ?? ''}|${JSON.stringify(options)}`;
  let format = numberFormats.get(key);
  if (!format) {
    format = new Intl.NumberFormat(locale, options);
    numberFormats.set(key, format);
  }
  return format;
}

/** How many minor units make one major unit of a currency (100 for USD, 1 for JPY). */
export function minorUnitsPerMajor(currency: string): number {
  const digits =
    cachedNumberFormat('en-US', { style: 'currency', currency: currency.toUpperCase() }).resolvedOptions()
      .maximumFractionDigits ?? 2;
  return 10 ** digits;
}

/**
 * A price given in minor units (cents for USD, as Stripe sends it) as the user reads it:
 * `formatMoney(1000, 'usd')` is "$10.00", `formatMoney(500, 'jpy')` is "¥500".
 */
export function formatMoney(minorUnits: number, currency: string, locale?: string): string {
  const code = currency.toUpperCase();
  return cachedNumberFormat(locale, { style: 'currency', currency: code }).format(
    minorUnits / minorUnitsPerMajor(code),
  );
}

/** The price of one credit, with enough digits to tell packs apart: "$0.075". */
export function formatPricePerCredit(minorUnits: number, credits: number, currency: string, locale?: string): string {
  if (credits <= 0) return '';
  const code = currency.toUpperCase();
  const perCredit = minorUnits / credits / minorUnitsPerMajor(code);
  return cachedNumberFormat(locale, {
    style: 'currency',
    currency: code,
    minimumFractionDigits: 2,
    maximumFractionDigits: 4,
  }).format(perCredit);
}

/** A plain count with grouping: "1,234". */
export function formatNumber(value: number, locale?: string): string {
  return cachedNumberFormat(locale, { maximumFractionDigits: 0 }).format(value);
}

/** "1 credit", "1,234 credits", "-5 credits". */
export function formatCredits(value: number, locale?: string): string {
  return `${formatNumber(value, locale)} ${Math.abs(value) === 1 ? 'credit' : 'credits'}`;
}

/** A ledger amount with its sign: "+100", "-5", "0". */
export function formatSignedCredits(value: number, locale?: string): string {
  return cachedNumberFormat(locale, { maximumFractionDigits: 0, signDisplay: 'exceptZero' }).format(value);
}

/** "per month", "per year", or "" for one-time prices. */
export function formatInterval(interval: string | null | undefined): string {
  switch (interval) {
    case 'month':
      return 'per month';
    case 'year':
      return 'per year';
    case 'week':
      return 'per week';
    case 'day':
      return 'per day';
    default:
      return '';
  }
}

function toDate(value: string | Date): Date {
  return value instanceof Date ? value : new Date(value);
}

/** "Nov 24, 2026". */
export function formatDate(value: string | Date, locale?: string): string {
  return new Intl.DateTimeFormat(locale, { dateStyle: 'medium' }).format(toDate(value));
}

/** "Nov 24, 2026, 10:18 PM". */
export function formatDateTime(value: string | Date, locale?: string): string {
  return new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeStyle: 'short' }).format(toDate(value));
}

/** Ledger kinds as words: "dispute_freeze" is "Dispute freeze". */
export function formatKind(kind: string): string {
  const words = kind.replace(/[_.-]+/g, ' ').trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}
