import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { json, mockApi, offline, tokens, unavailable } from '../test/mockApi';
import { renderApp } from '../test/renderApp';
import { dayStart } from './HistoryPage';

const entry = (id: string, kind: string, amount: number, balance_after: number, extra: object = {}) => ({
  id,
  kind,
  amount,
  balance_after,
  created_at: '2026-11-24T10:00:00Z',
  description: `${kind} ${id}`,
  lots: [],
  ...extra,
});

/** Records the files the page offers for download (jsdom neither saves files nor has object URLs). */
function catchDownloads(): { name: string; blob: Blob }[] {
  const files: { name: string; blob: Blob }[] = [];
  const blobs = new Map<string, Blob>();
  const { createObjectURL, revokeObjectURL } = URL;
  URL.createObjectURL = (blob: Blob) => {
    const url = `blob:test/${blobs.size}`;
    blobs.set(url, blob);
    return url;
  };
  URL.revokeObjectURL = () => {};
  onTestFinished(() => {
    Object.assign(URL, { createObjectURL, revokeObjectURL });
  });
  vi.spyOn(HTMLAnchorElement.prototype, 'click').mockImplementation(function (this: HTMLAnchorElement) {
    files.push({ name: this.download, blob: blobs.get(this.href)! });
  });
  return files;
}

describe('history', () => {
  it('pages by cursor and filters by kind and dates', async () => {
    const { requests } = mockApi({
      'POST /api/v1/auth/refresh': () => json(tokens()),
      'GET /api/v1/credits/ledger': (request) => {
        const query = new URL(request.url).searchParams;
        if (query.get('kind') === 'spend') return json({ entries: [entry('s1', 'spend', -5, 95, { feature: 'example.summarize', quantity: 1 })] });
        if (query.get('cursor') === 'c2') return json({ entries: [entry('p1', 'purchase', 100, 100)], next_cursor: null });
        return json({ entries: [entry('s1', 'spend', -5, 95)], next_cursor: 'c2' });
      },
    });
    renderApp('/history');
    const user = userEvent.setup();

    const table = await screen.findByRole('table');
    expect(within(table).getByText('-5')).toBeInTheDocument();
    expect(screen.getByText('Showing 1 entry')).toBeInTheDocument();
    await user.click(screen.getByRole('button', { name: 'Load more' }));
    expect(await within(table).findByText('+100')).toBeInTheDocument();
    expect(screen.getByText('Showing 2 entries (all)')).toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Load more' })).not.toBeInTheDocument();

    await user.selectOptions(screen.getByLabelText('Kind'), 'spend');
    await user.type(screen.getByLabelText('From'), '2026-11-01');
    expect(await screen.findByText('Showing 1 entry (all)')).toBeInTheDocument();
    const last = new URL(requests.at(-1)!.url).searchParams;
    expect(last.get('kind')).toBe('spend');
    expect(last.get('from')).toBe(dayStart('2026-11-01'));
    expect(screen.getByTestId('location')).toHaveTextContent('/history?kind=spend&from=2026-11-01');
  });

  it('ignores a kind in the URL that the API does not have', async () => {
    const { requests } = mockApi({
      'POST /api/v1/auth/refresh': () => json(tokens()),
      'GET /api/v1/credits/ledger': () => json({ entries: [entry('s1', 'spend', -5, 95)], next_cursor: null }),
    });
    renderApp('/history?kind=bogus');

    expect(await screen.findByText('Showing 1 entry (all)')).toBeInTheDocument();
    expect(screen.getByLabelText('Kind')).toHaveValue('');
    const sent = requests.filter((r) => r.url.includes('/credits/ledger'));
    expect(sent.length).toBeGreaterThan(0);
    expect(sent.every((r) => !new URL(r.url).searchParams.has('kind'))).toBe(true);
  });

  it('with the network down says the history did not load (not that there is none), and tries again', async () => {
    let down = true;
    mockApi({
      'POST /api/v1/auth/refresh': () => json(tokens()),
      'GET /api/v1/credits/ledger': () => (down ? offline() : json({ entries: [entry('p1', 'purchase', 100, 100)], next_cursor: null })),
    });
    renderApp('/history');
    const user = userEvent.setup();

    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('Could not reach Tollgate. Check your connection and try again.');
    expect(screen.getByText('Could not load your history.')).toBeInTheDocument();
    expect(screen.queryByText('No activity yet.')).not.toBeInTheDocument();

    down = false;
    await user.click(within(alert).getByRole('button', { name: 'Try again' }));
    expect(await screen.findByText('Showing 1 entry (all)')).toBeInTheDocument();
    expect(screen.queryByRole('alert')).not.toBeInTheDocument();
  });

  it('exports the whole filtered history as the server writes it, not only the rows loaded', async () => {
    const files = catchDownloads();
    const csv = 'created_at,id,kind,amount,balance_after\r\n' + Array.from({ length: 60 }, (_, i) => `2026-11-24T10:00:00Z,s${i},spend,-1,${99 - i}\r\n`).join('');
    const { requests } = mockApi({
      'POST /api/v1/auth/refresh': () => json(tokens('access-1')),
      // One page of 50 is loaded; 60 entries match.
      'GET /api/v1/credits/ledger': () => json({ entries: [entry('s1', 'spend', -1, 99)], next_cursor: 'c2' }),
      'GET /api/v1/credits/ledger.csv': () => new Response(csv, { headers: { 'content-type': 'text/csv; charset=utf-8' } }),
    });
    renderApp('/history?kind=spend&from=2026-11-01&to=2026-11-30');
    const user = userEvent.setup();
    await screen.findByRole('table');
    await user.click(screen.getByRole('button', { name: 'Export CSV' }));

    await waitFor(() => expect(files).toHaveLength(1));
    expect(files[0]!.name).toBe('tollgate-history_spend_2026-11-01_2026-11-30.csv');
    expect(await files[0]!.blob.text()).toBe(csv);
    const sent = requests.find((r) => r.url.includes('/credits/ledger.csv'))!;
    expect(sent.headers.get('authorization')).toBe('Bearer access-1');
    const query = new URL(sent.url).searchParams;
    expect(query.get('kind')).toBe('spend');
    expect(query.get('from')).toBe(dayStart('2026-11-01'));
    expect(query.get('to')).toBe(dayStart('2026-11-30', 1));
    expect(query.has('limit')).toBe(false);
    expect(screen.queryByRole('alert')).not.toBeInTheDocument();
  });

  it('says clearly when the export failed, and downloads nothing until it works', async () => {
    const files = catchDownloads();
    let down = true;
    mockApi({
      'POST /api/v1/auth/refresh': () => json(tokens()),
      'GET /api/v1/credits/ledger': () => json({ entries: [entry('s1', 'spend', -1, 99)], next_cursor: null }),
      'GET /api/v1/credits/ledger.csv': () => (down ? unavailable() : new Response('created_at\r\n', { headers: { 'content-type': 'text/csv' } })),
    });
    renderApp('/history');
    const user = userEvent.setup();
    await screen.findByRole('table');
    await user.click(screen.getByRole('button', { name: 'Export CSV' }));

    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('Export failed: no file was downloaded');
    expect(alert).toHaveTextContent('The database is unavailable: try again in a moment');
    expect(files).toHaveLength(0);

    down = false;
    await user.click(within(alert).getByRole('button', { name: 'Export again' }));
    await waitFor(() => expect(files).toHaveLength(1));
    expect(files[0]!.name).toBe('tollgate-history.csv');
    expect(screen.queryByRole('alert')).not.toBeInTheDocument();
  });

  it('reads date filters as whole local days', () => {
    expect(dayStart('2026-11-30', 1)).toBe(new Date(2026, 11, 1).toISOString());
    expect(dayStart('not a date')).toBeUndefined();
  });
});
