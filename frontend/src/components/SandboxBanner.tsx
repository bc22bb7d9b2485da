import { useReady } from '../api/queries';

/** Shown on every page while Stripe runs in sandbox mode (no Stripe keys). */
export function SandboxBanner() {
  const { data } = useReady();
  if (data?.stripe_mode !== 'sandbox') return null;
  return (
    <aside
      aria-label="Sandbox mode"
      className="bg-amber-300 px-4 py-2 text-center text-sm font-medium text-amber-950"
    >
      <strong className="font-semibold">Sandbox mode: no real payments.</strong>{' '}
      <span>Checkout uses a local test page and no card is charged.</span>
    </aside>
  );
}
