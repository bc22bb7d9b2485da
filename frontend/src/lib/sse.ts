// A parser for `text/event-stream` as the HTML standard defines it (§9.2.6), fed the response
// body's chunks however the network splits them. The SPA reads its streams with `fetch` rather
// than `EventSource`, which cannot send an `Authorization` header.

/** One dispatched event. */
export interface SseMessage {
  /** The last event id the stream has set (it carries over to the events after it). */
  id: string;
  /** `event:`, or "message" when the event named none. */
  event: string;
  /** The `data:` lines, joined by newlines. */
  data: string;
}

export interface SseHandlers {
  onMessage: (message: SseMessage) => void;
  /** A `:` comment line (a heartbeat), without the colon. */
  onComment?: (text: string) => void;
  /** A valid `retry:` field: the reconnection delay the server asks for, in ms. */
  onRetry?: (ms: number) => void;
}

/**
 * Incremental parser: `push` decoded text as it arrives (lines, fields and CRLF pairs may be split
 * anywhere), `end` when the body ends (a last event without its blank line is dropped, as the
 * standard says). `lastEventId` is what a reconnect sends as `Last-Event-ID`.
 */
export class SseParser {
  lastEventId: string;
  private buffer = '';
  /** The previous chunk ended in CR: a LF starting this one belongs to it. */
  private afterCr = false;
  private started = false;
  private data: string[] = [];
  private hasData = false;
  private eventType = '';
  private readonly handlers: SseHandlers;

  constructor(handlers: SseHandlers, lastEventId = '') {
    this.handlers = handlers;
    this.lastEventId = lastEventId;
  }

  push(text: string): void {
    let chunk = text;
    if (chunk.length === 0) return;
    if (!this.started) {
      this.started = true;
      if (chunk.charCodeAt(0) === 0xfeff) chunk = chunk.slice(1);
    }
    if (this.afterCr && chunk.startsWith('\n')) chunk = chunk.slice(1);
    this.afterCr = false;
    this.buffer += chunk;
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      this.line(this.buffer.slice(start, i));
      if (c === 13) {
        if (i + 1 < this.buffer.length) {
          if (this.buffer.charCodeAt(i + 1) === 10) i++;
        } else {
          this.afterCr = true;
        }
      }
      start = i + 1;
    }
    this.buffer = this.buffer.slice(start);
  }

  /** The body ended: an unterminated last line or event is discarded, and the state reset. */
  end(): void {
    this.buffer = '';
    this.afterCr = false;
    this.started = false;
    this.reset();
  }

  private reset(): void {
    this.data = [];
    this.hasData = false;
    this.eventType = '';
  }

  private line(line: string): void {
    if (line === '') {
      this.dispatch();
      return;
    }
    if (line.startsWith(':')) {
      this.handlers.onComment?.(line.slice(1).replace(/^ /, ''));
      return;
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'event':
        this.eventType = value;
        break;
      case 'data':
        this.data.push(value);
        this.hasData = true;
        break;
      case 'id':
        if (!value.includes('\0')) this.lastEventId = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.handlers.onRetry?.(Number(value));
        break;
      default:
        // Unknown fields are ignored.
        break;
    }
  }

  private dispatch(): void {
    if (!this.hasData) {
      this.reset();
      return;
    }
    const message = { id: this.lastEventId, event: this.eventType || 'message', data: this.data.join('\n') };
    this.reset();
    this.handlers.onMessage(message);
  }
}
