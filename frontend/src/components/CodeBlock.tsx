import { useId, useRef, useState } from 'react';
import { Button } from './ui';

/** Selects the whole text of an element, for copying by hand when the clipboard refuses. */
function selectContents(element: HTMLElement) {
  const selection = window.getSelection();
  if (!selection) return;
  const range = document.createRange();
  range.selectNodeContents(element);
  selection.removeAllRanges();
  selection.addRange(range);
}

/**
 * A snippet of code under a title, with a button that copies it (or selects it when copying
 * fails). The copy button's accessible name says which snippet it copies.
 */
export function CodeBlock({ title, code, language }: { title: string; code: string; language?: string }) {
  const id = useId();
  const preRef = useRef<HTMLPreElement>(null);
  const [copied, setCopied] = useState<'yes' | 'failed' | null>(null);

  const copy = async () => {
    try {
      await navigator.clipboard.writeText(code);
      setCopied('yes');
    } catch {
      if (preRef.current) selectContents(preRef.current);
      setCopied('failed');
    }
  };

  return (
    <figure aria-labelledby={`${id}-title`} className="min-w-0 space-y-2">
      <div className="flex flex-wrap items-center justify-between gap-2">
        <figcaption id={`${id}-title`} className="text-sm font-semibold text-slate-900">
          {title}
        </figcaption>
        <Button variant="secondary" className="px-3 py-1 text-xs" onClick={() => void copy()} aria-label={`Copy ${title} example`}>
          Copy
        </Button>
      </div>
      <pre
        ref={preRef}
        tabIndex={0}
        aria-label={`${title} example`}
        data-language={language}
        className="overflow-x-auto rounded-lg bg-slate-900 p-4 font-mono text-xs leading-relaxed text-slate-100 focus:outline-none focus-visible:ring-2 focus-visible:ring-brand-600"
      >
        <code>{code}</code>
      </pre>
      <p aria-live="polite" className="text-xs text-slate-600">
        {copied === 'yes'
          ? `${title} example copied to the clipboard.`
          : copied === 'failed'
            ? 'Copying failed: the example is selected, copy it with your keyboard.'
            : ''}
      </p>
    </figure>
  );
}
