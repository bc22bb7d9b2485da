import { expect, test } from '@playwright/test';
import { createHmac, randomUUID } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ADMIN_KEY, nav, screenshot, signUp, tollgate, uniqueEmail } from './helpers';

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  status: number;
}

/**
 * The product's webhook receiver: keeps every request, and answers 500 to the first one whose
 * body contains `failFirst` (so that delivery is retried), 200 to the rest.
 */
async function startReceiver(failFirst: string): Promise<{ server: Server; url: string; received: Received[] }> {
  const received: Received[] = [];
  let failed = false;
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const fail = !failed && body.includes(failFirst);
      if (fail) failed = true;
      const status = fail ? 500 : 200;
      received.push({ headers: request.headers, body, status });
      response.writeHead(status, { 'content-type': 'text/plain' });
      response.end(fail ? 'not now' : 'ok');
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}/tollgate/webhooks`, received };
}

/** Verifies a delivery as the Standard Webhooks libraries do: HMAC-SHA256 of "id.timestamp.body". */
function verifies(secret: string, delivery: Received): boolean {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const id = String(delivery.headers['webhook-id']);
  const timestamp = String(delivery.headers['webhook-timestamp']);
  const expected = createHmac('sha256', key).update(`${id}.${timestamp}.${delivery.body}`).digest('base64');
  return String(delivery.headers['webhook-signature'])
    .split(' ')
    .some((s) => s === `v1,${expected}`);
}

test('an admin adds a webhook endpoint, sees its secret once, and reads and redelivers its deliveries', async ({
  page,
  request,
  context,
  baseURL,
}, testInfo) => {
  const reason = `Webhook e2e ${randomUUID()}`;
  const receiver = await startReceiver(reason);
  try {
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: baseURL });
    const admin = uniqueEmail('webhooks-admin');
    await signUp(page, admin);
    tollgate('users', 'promote', admin);
    await page.reload();
    await nav(page, 'Admin').click();
    const region = page.getByRole('region', { name: 'Webhooks' });
    const form = region.getByRole('form', { name: 'Add a webhook endpoint' });

    // A URL that is not http(s) is refused, with the API's message beside the field.
    await form.getByLabel('Endpoint URL').fill('ftp://example.com/hooks');
    await form.getByRole('button', { name: 'Add endpoint' }).click();
    await expect(form.getByLabel('Endpoint URL')).toHaveAttribute('aria-invalid', 'true');

    await form.getByLabel('Endpoint URL').fill(receiver.url);
    await form.getByRole('radio', { name: /Only these/ }).check();
    await form.getByRole('checkbox', { name: 'credits.granted' }).check();
    await form.getByLabel('Description (optional)').fill('The product backend');
    await form.getByRole('button', { name: 'Add endpoint' }).click();

    // The secret, once, with a copy button.
    const field = region.getByLabel('Signing secret', { exact: true });
    await expect(field).toHaveValue(/^whsec_[A-Za-z0-9+/=]{40,}$/);
    const secret = await field.inputValue();
    await region.getByRole('button', { name: 'Copy' }).click();
    await expect(region.getByText('Copied to the clipboard.')).toBeVisible();
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(secret);
    await screenshot(page, testInfo, '42-webhook-secret');
    await region.getByRole('button', { name: 'Done' }).click();
    await expect(region.getByLabel('Signing secret', { exact: true })).toHaveCount(0);
    const list = region.getByRole('list', { name: 'Webhook endpoints' });
    const row = list.getByRole('listitem').filter({ hasText: receiver.url });
    await expect(row).toContainText('The product backend');
    await expect(row).toContainText('credits.granted');
    await expect(row).toContainText('Enabled');
    await page.reload();
    await expect(row).toBeVisible();
    await expect(page.getByText(secret)).toHaveCount(0);
    expect(await page.content()).not.toContain(secret);

    // An event: credits granted to the admin. The receiver fails the first attempt; the retry succeeds.
    const granted = await request.post('/api/v1/credits/grant', {
      headers: { 'x-admin-key': ADMIN_KEY, 'idempotency-key': randomUUID() },
      data: { email: admin, amount: 25, reason },
    });
    expect(granted.status()).toBe(200);
    const ours = () => receiver.received.filter((r) => r.body.includes(reason));
    await expect.poll(() => ours().map((r) => r.status), { timeout: 30_000 }).toEqual([500, 200]);
    const [first, second] = ours();
    expect(verifies(secret, second!)).toBe(true);
    expect(second!.headers['webhook-id']).toBe(first!.headers['webhook-id']);
    const eventId = String(second!.headers['webhook-id']);
    const event = JSON.parse(second!.body) as { id: string; type: string; data: { amount: number } };
    expect(event).toMatchObject({ id: eventId, type: 'credits.granted', data: { amount: 25 } });

    // The deliveries: both attempts, newest first, with their status codes.
    await row.getByRole('button', { name: `Show deliveries to ${receiver.url}` }).click();
    const table = row.getByRole('table');
    const attempts = table.getByRole('row').filter({ hasText: eventId });
    await expect(attempts).toHaveCount(2);
    await expect(attempts.nth(0)).toContainText('200');
    await expect(attempts.nth(0)).toContainText('Delivered');
    await expect(attempts.nth(1)).toContainText('500');
    await screenshot(page, testInfo, '43-webhook-deliveries');

    // Redeliver: the receiver gets the event again, and the list shows the new attempt.
    await attempts.nth(0).getByRole('button', { name: `Redeliver credits.granted ${eventId}` }).click();
    await expect(row.getByText(`Event ${eventId} queued for delivery again.`)).toBeVisible();
    await expect.poll(() => ours().length, { timeout: 30_000 }).toBe(3);
    expect(verifies(secret, ours()[2]!)).toBe(true);
    await row.getByRole('button', { name: 'Refresh' }).click();
    await expect(attempts).toHaveCount(3);

    // Disable, rotate (the new secret shown once), delete.
    await row.getByRole('button', { name: `Disable ${receiver.url}` }).click();
    await expect(row).toContainText('Disabled');
    await row.getByRole('button', { name: `Rotate the secret of ${receiver.url}` }).click();
    await page.getByRole('dialog', { name: 'Rotate the signing secret?' }).getByRole('button', { name: 'Rotate secret' }).click();
    const rotated = region.getByLabel('Signing secret', { exact: true });
    await expect(rotated).toHaveValue(/^whsec_/);
    expect(await rotated.inputValue()).not.toBe(secret);
    await region.getByRole('button', { name: 'Done' }).click();
    await row.getByRole('button', { name: `Delete ${receiver.url}` }).click();
    await page.getByRole('dialog', { name: 'Delete this webhook endpoint?' }).getByRole('button', { name: 'Delete endpoint' }).click();
    await expect(region.getByText(`Endpoint ${receiver.url} deleted. Nothing more is sent to it.`)).toBeVisible();
    await expect(row).toHaveCount(0);
  } finally {
    await new Promise<void>((resolve) => receiver.server.close(() => resolve()));
  }
});
