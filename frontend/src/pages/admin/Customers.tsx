import { useEffect, useRef, useState, type ReactNode } from 'react';
import { useSearchParams } from 'react-router';
import type { Customer } from '../../api/client';
import { useCustomer, useCustomerLedger, useCustomers } from '../../api/queries';
import { LedgerTable } from '../../components/LedgerTable';
import { LoadError } from '../../components/LoadErrors';
import { Button, Card, Loading, Stat, TextField } from '../../components/ui';
import { formatCredits, formatDateTime, formatNumber } from '../../lib/format';
import { useDebounced } from '../../lib/useDebounced';
import { customerLabel } from './customerLabel';
import { GrantCredits } from './GrantCredits';

function CustomerRow({ customer, onOpen }: { customer: Customer; onOpen: () => void }) {
  return (
    <li>
      <button
        type="button"
        onClick={onOpen}
        className="flex w-full flex-col gap-1 rounded-md px-2 py-3 text-left hover:bg-slate-50 focus-visible:outline-2 focus-visible:outline-brand-600 sm:flex-row sm:items-center sm:justify-between sm:gap-4"
      >
        <span className="min-w-0 space-y-0.5">
          <span className="block break-words font-medium text-slate-900">
            {customer.external_id ?? <span className="font-normal italic text-slate-600">No external id</span>}
          </span>
          <span className="block break-words text-xs text-slate-600">
            {customer.email ?? 'No email'}
            {customer.name && ` · ${customer.name}`}
          </span>
        </span>
        <span className="shrink-0 text-sm tabular-nums text-slate-800 sm:text-right">
          <span className="font-semibold">{formatCredits(customer.balance)}</span>
          <span className="text-xs text-slate-600"> · {formatNumber(customer.available)} available</span>
        </span>
      </button>
    </li>
  );
}

function CustomerList({ search, onSearch, onOpen }: { search: string; onSearch: (value: string) => void; onOpen: (c: Customer) => void }) {
  const q = useDebounced(search.trim(), 300);
  const customers = useCustomers(q);
  const list = customers.data?.pages.flatMap((p) => p.data) ?? [];

  return (
    <Card title="Customers">
      <form role="search" aria-label="Customers" className="mb-4" onSubmit={(e) => e.preventDefault()}>
        <TextField
          label="Search customers"
          name="q"
          type="search"
          value={search}
          onChange={(e) => onSearch(e.target.value)}
          hint="The start of an email or external id."
          autoComplete="off"
        />
      </form>
      {!customers.data ? (
        customers.isError ? <LoadError error={customers.error} what="the customers" /> : <Loading label="Loading customers…" />
      ) : list.length === 0 ? (
        <p className="text-sm text-slate-600">
          {q ? `No customers match “${q}”.` : 'No customers yet. Your backend adds them with a server key (PUT /api/v1/customers/{id}).'}
        </p>
      ) : (
        <div className="space-y-4">
          <ul className="-mx-2 divide-y divide-slate-100" aria-label="Customers" aria-busy={customers.isPlaceholderData || undefined}>
            {list.map((customer) => (
              <CustomerRow key={customer.id} customer={customer} onOpen={() => onOpen(customer)} />
            ))}
          </ul>
          {customers.hasNextPage && (
            <Button
              variant="secondary"
              onClick={() => void customers.fetchNextPage()}
              busy={customers.isFetchingNextPage}
              busyLabel="Loading…"
            >
              Load more
            </Button>
          )}
        </div>
      )}
    </Card>
  );
}

function CustomerHistory({ customer }: { customer: Customer }) {
  const ledger = useCustomerLedger(customer);
  const entries = ledger.data?.pages.flatMap((p) => p.entries) ?? [];
  return (
    <Card title="History">
      {!ledger.data ? (
        ledger.isError ? <LoadError error={ledger.error} what="this customer's history" /> : <Loading label="Loading history…" />
      ) : entries.length === 0 ? (
        <p className="text-sm text-slate-600">No activity yet.</p>
      ) : (
        <>
        <LedgerTable entries={entries} caption={`History of ${customerLabel(customer)}, newest first`} detailed />
        {ledger.hasNextPage && (
          <div className="mt-4">
            <Button variant="secondary" onClick={() => void ledger.fetchNextPage()} busy={ledger.isFetchingNextPage} busyLabel="Loading…">
              Load more
            </Button>
          </div>
        )}
        </>
      )}
    </Card>
  );
}

function Detail({ label, children }: { label: string; children: ReactNode }) {
  return (
    <div className="min-w-0">
      <dt className="text-xs font-medium uppercase tracking-wide text-slate-600">{label}</dt>
      <dd className="break-words text-sm text-slate-900">{children}</dd>
    </div>
  );
}

function CustomerDetail({ id, onClose }: { id: string; onClose: () => void }) {
  const customer = useCustomer(id);
  const headingRef = useRef<HTMLHeadingElement>(null);
  useEffect(() => headingRef.current?.focus(), []);
  const c = customer.data;

  return (
    <section aria-labelledby="customer-heading" className="space-y-6">
      <div className="flex flex-wrap items-center justify-between gap-2">
        <h2 id="customer-heading" ref={headingRef} tabIndex={-1} className="min-w-0 break-words text-lg font-semibold text-slate-900 focus:outline-none">
          {c ? `Customer ${customerLabel(c)}` : 'Customer'}
        </h2>
        <Button variant="secondary" onClick={onClose}>
          <span aria-hidden="true">←</span> All customers
        </Button>
      </div>
      {!customer.data ? (
        customer.isError ? <LoadError error={customer.error} what="the customer" /> : <Loading label="Loading the customer…" />
      ) : (
        <>
          <dl className="grid grid-cols-2 gap-4 sm:grid-cols-4">
            <Stat label="Balance" value={formatCredits(customer.data.balance)} />
            <Stat label="Available" value={formatCredits(customer.data.available)} />
            <Stat label="Held" value={formatCredits(customer.data.held)} />
            <Stat label="Debt" value={formatCredits(customer.data.debt)} />
          </dl>
          <Card>
            <dl className="grid grid-cols-1 gap-4 sm:grid-cols-2">
              <Detail label="External id">{customer.data.external_id ?? '—'}</Detail>
              <Detail label="Email">{customer.data.email ?? '—'}</Detail>
              <Detail label="Name">{customer.data.name ?? '—'}</Detail>
              <Detail label="Tollgate id">
                <code className="text-xs">{customer.data.id}</code>
              </Detail>
              <Detail label="Created">{formatDateTime(customer.data.created_at)}</Detail>
              <Detail label="Updated">{formatDateTime(customer.data.updated_at)}</Detail>
              {customer.data.metadata != null && (
                <div className="min-w-0 sm:col-span-2">
                  <dt className="text-xs font-medium uppercase tracking-wide text-slate-600">Metadata</dt>
                  <dd>
                    <pre className="mt-1 overflow-x-auto rounded-md bg-slate-50 p-3 text-xs text-slate-800">
                      {JSON.stringify(customer.data.metadata, null, 2)}
                    </pre>
                  </dd>
                </div>
              )}
            </dl>
          </Card>
          <div className="grid grid-cols-1 gap-6 lg:grid-cols-3">
            <GrantCredits key={customer.data.id} customer={customer.data} />
            <div className="min-w-0 lg:col-span-2">
              <CustomerHistory customer={customer.data} />
            </div>
          </div>
        </>
      )}
    </section>
  );
}

/**
 * The customers a product's backend created through its server keys (and users who signed up
 * here): search them, open one to read its figures and history and to grant it credits.
 * The open customer is in the address (`?customer=<id>`), so it can be linked and reloaded.
 */
export function Customers() {
  const [params, setParams] = useSearchParams();
  const [search, setSearch] = useState('');
  const openId = params.get('customer');

  const setOpen = (id: string | null) => {
    const next = new URLSearchParams(params);
    if (id) next.set('customer', id);
    else next.delete('customer');
    setParams(next);
  };

  return openId ? (
    <CustomerDetail key={openId} id={openId} onClose={() => setOpen(null)} />
  ) : (
    <CustomerList search={search} onSearch={setSearch} onOpen={(c) => setOpen(c.id)} />
  );
}
