import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it } from 'vitest';
import { balance, deferred, json, mockApi, offline, problem, tokens, unavailable } from '../test/mockApi';
import { renderApp } from '../test/renderApp';

const signedOut = { 'POST /api/v1/auth/refresh': () => problem(401, 'invalid_refresh_token', 'no session') };

describe('sign in', () => {
  it('shows field errors from the problem details next to their fields', async () => {
    mockApi({
      ...signedOut,
      'POST /api/v1/auth/login': () =>
        problem(422, 'validation_failed', '1 field is invalid', {
          errors: [{ field: 'email', code: 'email', message: 'email is not a valid email address' }],
        }),
    });
    renderApp('/sign-in');
    const user = userEvent.setup();
    await user.type(await screen.findByLabelText('Email'), 'nope');
    await user.type(screen.getByLabelText('Password'), 'whatever1');
    await user.click(screen.getByRole('button', { name: 'Sign in' }));

    const email = screen.getByLabelText('Email');
    await waitFor(() => expect(email).toHaveAccessibleDescription('Email is not a valid email address'));
    expect(email).toHaveAttribute('aria-invalid', 'true');
    expect(screen.getByLabelText('Password')).toHaveAttribute('aria-invalid', 'false');
    expect(screen.queryByRole('alert')).not.toBeInTheDocument();
  });

  it('shows the detail when no field is to blame', async () => {
    mockApi({ ...signedOut, 'POST /api/v1/auth/login': () => problem(401, 'invalid_credentials', 'the email or password is wrong') });
    renderApp('/sign-in');
    const user = userEvent.setup();
    await user.type(await screen.findByLabelText('Email'), 'ada@example.com');
    await user.type(screen.getByLabelText('Password'), 'wrong password');
    await user.click(screen.getByRole('button', { name: 'Sign in' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('The email or password is wrong');
  });

  it('disables the button while signing in, then goes where the user was going', async () => {
    const login = deferred<Response>();
    mockApi({
      ...signedOut,
      'POST /api/v1/auth/login': () => login.promise,
      'GET /api/v1/credits/ledger': () => json({ entries: [], next_cursor: null }),
    });
    renderApp('/sign-in?next=%2Fhistory%3Fkind%3Dspend');
    const user = userEvent.setup();
    await user.type(await screen.findByLabelText('Email'), 'ada@example.com');
    await user.type(screen.getByLabelText('Password'), 'correct horse');
    await user.click(screen.getByRole('button', { name: 'Sign in' }));

    const busy = screen.getByRole('button', { name: 'Signing in…' });
    expect(busy).toBeDisabled();
    await user.click(busy);

    login.resolve(json(tokens()));
    expect(await screen.findByRole('heading', { level: 1, name: 'History' })).toBeInTheDocument();
    expect(screen.getByTestId('location')).toHaveTextContent('/history?kind=spend');
  });

  it('ignores a `next` that leaves the site', async () => {
    mockApi({
      ...signedOut,
      'POST /api/v1/auth/login': () => json(tokens()),
      'GET /api/v1/credits/balance': () => json(balance),
      'GET /api/v1/credits/ledger': () => json({ entries: [], next_cursor: null }),
      'GET /api/v1/usage': () => json({ group_by: 'feature', from: '', to: '', total_credits: 0, buckets: [] }),
      'GET /api/v1/billing/subscription': () => json({ subscription: null }),
    });
    renderApp('/sign-in?next=%2F%2Fevil.example.com');
    const user = userEvent.setup();
    await user.type(await screen.findByLabelText('Email'), 'ada@example.com');
    await user.type(screen.getByLabelText('Password'), 'correct horse');
    await user.click(screen.getByRole('button', { name: 'Sign in' }));
    expect(await screen.findByRole('heading', { level: 1, name: 'Dashboard' })).toBeInTheDocument();
    expect(screen.getByTestId('location')).toHaveTextContent(/^\/$/);
  });
});

describe('sign up', () => {
  it('shows each invalid field’s message and keeps the button usable after', async () => {
    const { requests } = mockApi({
      ...signedOut,
      'POST /api/v1/auth/register': () =>
        problem(422, 'validation_failed', '2 fields are invalid', {
          errors: [
            { field: 'email', code: 'email', message: 'email is not a valid email address' },
            { field: 'password', code: 'length', message: 'password must be at least 8 characters' },
          ],
        }),
    });
    renderApp('/sign-up');
    const user = userEvent.setup();
    await user.type(await screen.findByLabelText('Email'), 'x');
    await user.type(screen.getByLabelText('Password'), 'short');
    await user.click(screen.getByRole('button', { name: 'Create account' }));

    await waitFor(() =>
      expect(screen.getByLabelText('Password')).toHaveAccessibleDescription(
        'Password must be at least 8 characters 8 to 128 characters.',
      ),
    );
    expect(screen.getByLabelText('Email')).toHaveAccessibleDescription('Email is not a valid email address');
    expect(screen.getByRole('button', { name: 'Create account' })).toBeEnabled();
    const register = requests.find((r) => r.url.endsWith('/auth/register'));
    expect(await register?.json()).toEqual({ email: 'x', password: 'short', name: null });
  });

  it('shows a taken email as a general error', async () => {
    mockApi({
      ...signedOut,
      'POST /api/v1/auth/register': () => problem(409, 'email_taken', 'an account with this email already exists'),
    });
    renderApp('/sign-up');
    const user = userEvent.setup();
    await user.type(await screen.findByLabelText('Email'), 'ada@example.com');
    await user.type(screen.getByLabelText('Password'), 'long enough');
    await user.click(screen.getByRole('button', { name: 'Create account' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('An account with this email already exists');
  });
});

/** What the dashboard loads, for tests that sign out from it. */
const dashboard = {
  'GET /api/v1/credits/balance': () => json(balance),
  'GET /api/v1/credits/balance-history': () =>
    json({ interval: 'day', from: '2026-10-26T00:00:00Z', to: '2026-11-24T12:00:00Z', opening_balance: 0, points: [] }),
  'GET /api/v1/credits/ledger': () => json({ entries: [], next_cursor: null }),
  'GET /api/v1/usage': () => json({ group_by: 'feature', from: '', to: '', total_credits: 0, buckets: [] }),
  'GET /api/v1/billing/subscription': () => json({ subscription: null }),
};

describe('sign out', () => {
  it('says so once the server has ended the session', async () => {
    const { requests } = mockApi({
      'POST /api/v1/auth/refresh': () => json(tokens()),
      'POST /api/v1/auth/logout': () => new Response(null, { status: 204 }),
      ...dashboard,
    });
    renderApp('/');
    const user = userEvent.setup();
    await user.click(await screen.findByRole('button', { name: 'Sign out' }));
    expect(await screen.findByText('You have signed out.')).toBeInTheDocument();
    expect(screen.getByTestId('location')).toHaveTextContent(/^\/sign-in$/);
    expect(requests.filter((r) => r.url.endsWith('/auth/logout'))).toHaveLength(1);
  });

  it('that the server fails says it failed, keeps the user signed in, and signs out on retry', async () => {
    let down = true;
    mockApi({
      'POST /api/v1/auth/refresh': () => json(tokens()),
      'POST /api/v1/auth/logout': () => (down ? unavailable() : new Response(null, { status: 204 })),
      ...dashboard,
    });
    renderApp('/');
    const user = userEvent.setup();
    await user.click(await screen.findByRole('button', { name: 'Sign out' }));

    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('Sign-out failed: you are still signed in');
    expect(alert).toHaveTextContent('The database is unavailable: try again in a moment');
    expect(screen.queryByText(/You have signed out/)).not.toBeInTheDocument();
    expect(screen.getByTestId('location')).toHaveTextContent(/^\/$/);
    expect(screen.getByRole('heading', { level: 1, name: 'Dashboard' })).toBeInTheDocument();
    expect(screen.getByRole('button', { name: 'Sign out' })).toBeEnabled();

    down = false;
    await user.click(within(alert).getByRole('button', { name: 'Try signing out again' }));
    expect(await screen.findByText('You have signed out.')).toBeInTheDocument();
    expect(screen.getByTestId('location')).toHaveTextContent(/^\/sign-in$/);
  });

  it('with the network down says it failed and never claims a sign-out', async () => {
    mockApi({
      'POST /api/v1/auth/refresh': () => json(tokens()),
      'POST /api/v1/auth/logout': offline,
      ...dashboard,
    });
    renderApp('/');
    const user = userEvent.setup();
    await user.click(await screen.findByRole('button', { name: 'Sign out' }));
    expect(await screen.findByRole('alert')).toHaveTextContent(
      'Sign-out failed: you are still signed inCould not reach Tollgate. Check your connection and try again.',
    );
    expect(screen.queryByText(/You have signed out/)).not.toBeInTheDocument();
    expect(screen.getByRole('heading', { level: 1, name: 'Dashboard' })).toBeInTheDocument();
  });
});

describe('protected pages', () => {
  it('do not send a user to sign in when Tollgate cannot answer whether they are signed in', async () => {
    let down = true;
    mockApi({
      'POST /api/v1/auth/refresh': () => (down ? unavailable() : json(tokens())),
      'GET /api/v1/credits/ledger': () => json({ entries: [], next_cursor: null }),
    });
    renderApp('/history');
    const user = userEvent.setup();
    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('Could not restore your session');
    expect(alert).toHaveTextContent('The database is unavailable: try again in a moment');
    expect(screen.queryByRole('heading', { name: 'Sign in to Tollgate' })).not.toBeInTheDocument();
    expect(screen.getByTestId('location')).toHaveTextContent(/^\/history$/);

    down = false;
    await user.click(within(alert).getByRole('button', { name: 'Try again' }));
    expect(await screen.findByRole('heading', { level: 1, name: 'History' })).toBeInTheDocument();
  });

  it('send a signed-out visitor to sign in, remembering where they were going', async () => {
    mockApi(signedOut);
    renderApp('/history?kind=spend');
    expect(await screen.findByRole('heading', { level: 1, name: 'Sign in to Tollgate' })).toBeInTheDocument();
    expect(screen.getByTestId('location')).toHaveTextContent('/sign-in?next=%2Fhistory%3Fkind%3Dspend');
  });

  it('show the sandbox banner on every page', async () => {
    mockApi(signedOut);
    renderApp('/sign-in');
    expect(await screen.findByText('Sandbox mode: no real payments.')).toBeInTheDocument();
  });
});
