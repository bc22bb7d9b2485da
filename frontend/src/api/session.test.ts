import { describe, expect, it, vi } from 'vitest';
import { json, mockApi, offline, problem, tokens, unavailable } from '../test/mockApi';
import { api, unwrap } from './client';
import { getAccessToken, onSessionLost, refreshSession, setAccessToken } from './session';

describe('the session', () => {
  it('sends the access token with API calls', async () => {
    setAccessToken('access-1');
    const { requests } = mockApi({ 'GET /api/v1/me': () => json(tokens().user) });
    await unwrap(api.GET('/api/v1/me'));
    expect(requests[0]?.headers.get('authorization')).toBe('Bearer access-1');
  });

  it('renews an expired token once and sends the request again, body and all', async () => {
    setAccessToken('expired');
    let refreshes = 0;
    const { requests } = mockApi({
      'POST /api/v1/auth/refresh': () => {
        refreshes += 1;
        return json(tokens('fresh'));
      },
      'POST /api/v1/example/use-credits': (request) =>
        request.headers.get('authorization') === 'Bearer fresh'
          ? json({ summary: 'ok' })
          : problem(401, 'token_expired', 'the access token expired'),
    });
    const result = await unwrap(
      api.POST('/api/v1/example/use-credits', { body: { text: 'Hello.' }, params: { header: { 'Idempotency-Key': 'k1' } } }),
    );
    expect(result).toEqual({ summary: 'ok' });
    expect(refreshes).toBe(1);
    expect(getAccessToken()).toBe('fresh');
    const retried = requests.at(-1)!;
    expect(await retried.json()).toEqual({ text: 'Hello.' });
    expect(retried.headers.get('idempotency-key')).toBe('k1');
  });

  it('shares one refresh between concurrent callers (the refresh token rotates)', async () => {
    let refreshes = 0;
    mockApi({
      'POST /api/v1/auth/refresh': async () => {
        refreshes += 1;
        await new Promise((r) => setTimeout(r, 10));
        return json(tokens('shared'));
      },
    });
    const [a, b] = await Promise.all([refreshSession(), refreshSession()]);
    expect(refreshes).toBe(1);
    expect(a?.access_token).toBe('shared');
    expect(b?.access_token).toBe('shared');
  });

  it('reports a lost session when the refresh is refused', async () => {
    setAccessToken('expired');
    const lost = vi.fn();
    const off = onSessionLost(lost);
    mockApi({
      'POST /api/v1/auth/refresh': () => problem(401, 'invalid_refresh_token', 'no session'),
      'GET /api/v1/credits/balance': () => problem(401, 'token_expired', 'the access token expired'),
    });
    await expect(unwrap(api.GET('/api/v1/credits/balance'))).rejects.toMatchObject({ status: 401, code: 'token_expired' });
    expect(lost).toHaveBeenCalledOnce();
    expect(getAccessToken()).toBeNull();
    off();
  });

  it('keeps the session when the refresh gets no answer, and fails the call with the reason', async () => {
    setAccessToken('expired');
    const lost = vi.fn();
    const off = onSessionLost(lost);
    let refresh: () => Response = unavailable;
    mockApi({
      'POST /api/v1/auth/refresh': () => refresh(),
      'GET /api/v1/credits/balance': () => problem(401, 'token_expired', 'the access token expired'),
    });
    await expect(unwrap(api.GET('/api/v1/credits/balance'))).rejects.toMatchObject({ status: 503, code: 'database_unavailable' });
    refresh = offline;
    await expect(unwrap(api.GET('/api/v1/credits/balance'))).rejects.toMatchObject({ status: 0, code: 'network_error' });
    await expect(refreshSession()).rejects.toMatchObject({ code: 'network_error' });
    expect(lost).not.toHaveBeenCalled();
    expect(getAccessToken()).toBe('expired');
    off();
  });

  it('does not refresh for other refusals', async () => {
    setAccessToken('access-1');
    const { requests } = mockApi({
      'GET /api/v1/admin/reconcile': () => problem(403, 'admin_required', 'admins only'),
    });
    await expect(unwrap(api.GET('/api/v1/admin/reconcile'))).rejects.toMatchObject({ code: 'admin_required' });
    expect(requests).toHaveLength(1);
  });
});
