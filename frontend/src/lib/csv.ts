// Client-side CSV export of ledger entries.

export interface CsvEntry {
  id: string;
  created_at: string;
  kind: string;
  amount: number;
  balance_after?: number | null;
  description?: string | null;
  feature?: string | null;
  quantity?: number | null;
}

const HEADER = ['date', 'kind', 'amount', 'balance_after', 'description', 'feature', 'quantity', 'id'];

/** Quotes a field when it needs it, and defuses text a spreadsheet would run as a formula. */
export function csvField(value: string | number | null | undefined): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'number') return String(value);
  let text = value;
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  if (/[",\r\n]/.test(text)) text = `"${text.replace(/"/g, '""')}"`;
  return text;
}

/** RFC 4180 CSV (CRLF line ends) with a header row. */
export function ledgerToCsv(entries: readonly CsvEntry[]): string {
  const rows = entries.map((e) =>
    [e.created_at, e.kind, e.amount, e.balance_after, e.description, e.feature, e.quantity, e.id].map(csvField).join(','),
  );
  return [HEADER.join(','), ...rows].join('\r\n') + '\r\n';
}

/** Offers `text` to the user as a file download. */
export function downloadText(filename: string, text: string, type = 'text/csv;charset=utf-8'): void {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
