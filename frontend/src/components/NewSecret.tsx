import { useEffect, useId, useRef, useState } from 'react';
import { Button } from './ui';

/**
 * A key's secret, right after it was created: the one time it can be read. Takes the focus so a
 * screen reader announces it, and copies it to the clipboard (or selects it when copying fails).
 */
export function NewSecret({
  created,
  secretLabel = 'Secret of the new key',
  title,
  onDone,
}: {
  created: { name: string; secret: string };
  /** The secret field's accessible name. */
  secretLabel?: string;
  /** The heading; by default “Key “name” created”. */
  title?: string;
  onDone: () => void;
}) {
  const [copied, setCopied] = useState<'yes' | 'failed' | null>(null);
  const inputRef = useRef<HTMLInputElement>(null);
  const headingRef = useRef<HTMLHeadingElement>(null);
  const id = useId();
  useEffect(() => headingRef.current?.focus(), []);

  const copy = async () => {
    try {
      await navigator.clipboard.writeText(created.secret);
      setCopied('yes');
    } catch {
      inputRef.current?.select();
      setCopied('failed');
    }
  };

  return (
    <section aria-labelledby={`${id}-heading`} className="space-y-3 rounded-xl bg-emerald-50 p-4 ring-1 ring-emerald-200 sm:p-6">
      <h2 id={`${id}-heading`} ref={headingRef} tabIndex={-1} className="font-semibold text-emerald-950 focus:outline-none">
        {title ?? `Key “${created.name}” created`}
      </h2>
      <p className="text-sm text-emerald-900">
        Copy the secret now and store it somewhere safe. <strong>It will not be shown again.</strong>
      </p>
      <div className="flex flex-col gap-2 sm:flex-row">
        <label htmlFor={`${id}-secret`} className="sr-only">
          {secretLabel}
        </label>
        <input
          id={`${id}-secret`}
          ref={inputRef}
          readOnly
          value={created.secret}
          onFocus={(e) => e.currentTarget.select()}
          className="min-w-0 flex-1 rounded-md bg-white px-3 py-2 font-mono text-sm ring-1 ring-inset ring-emerald-300"
        />
        <Button onClick={copy}>Copy</Button>
        <Button variant="secondary" onClick={onDone}>
          Done
        </Button>
      </div>
      <p aria-live="polite" className="text-sm text-emerald-900">
        {copied === 'yes' ? 'Copied to the clipboard.' : copied === 'failed' ? 'Copying failed: the secret is selected, copy it with your keyboard.' : ''}
      </p>
    </section>
  );
}
