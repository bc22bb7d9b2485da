import { render, screen, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import type { LedgerEntry } from '../api/client';
import { LedgerTable } from './LedgerTable';

const entries: LedgerEntry[] = [
  {
    id: 'e2',
    kind: 'spend',
    amount: -5,
    balance_after: 95,
    created_at: '2026-11-24T11:00:00Z',
    description: 'Summarised a text with a very long description that a phone has to wrap',
    feature: 'example.summarize',
    quantity: 1,
    lots: [],
  },
  { id: 'e1', kind: 'purchase', amount: 100, balance_after: 100, created_at: '2026-11-24T10:00:00Z', description: null, lots: [] },
];

describe('the ledger table', () => {
  it('on a phone drops the date column, keeping each date in its entry, so the amount and balance after stay in view', () => {
    render(<LedgerTable entries={entries} caption="History" detailed />);
    const table = screen.getByRole('table', { name: 'History' });
    const headers = within(table).getAllByRole('columnheader');
    expect(headers.map((h) => h.textContent)).toEqual(['Date', 'Entry', 'Feature', 'Amount', 'Balance after']);
    // Shown from the small breakpoint up only (Tailwind's `hidden sm:table-cell`; jsdom applies no CSS).
    expect(headers[0]).toHaveClass('hidden', 'sm:table-cell');
    expect(headers[2]).toHaveClass('hidden', 'md:table-cell');
    // The amount and the balance after are never hidden.
    for (const header of [headers[3]!, headers[4]!]) expect(header.className).not.toMatch(/\bhidden\b/);

    const [, spend, purchase] = within(table).getAllByRole('row');
    const cells = within(spend!).getAllByRole('cell');
    expect(cells[0]).toHaveClass('hidden', 'sm:table-cell');
    // The entry's own cell carries the date for phones (hidden from the small breakpoint up).
    const date = within(cells[1]!).getByTestId('entry-date');
    expect(date).toHaveAttribute('datetime', '2026-11-24T11:00:00Z');
    expect(date).toHaveClass('sm:hidden');
    expect(cells[3]).toHaveTextContent('-5');
    expect(cells[3]).toHaveClass('whitespace-nowrap');
    expect(cells[4]).toHaveTextContent('95');
    expect(within(purchase!).getAllByRole('cell')[3]).toHaveTextContent('+100');
  });
});
