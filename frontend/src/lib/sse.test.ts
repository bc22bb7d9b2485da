import { describe, expect, it } from 'vitest';
import { SseParser, type SseMessage } from './sse';

function parse(chunks: readonly string[], lastEventId = '') {
  const messages: SseMessage[] = [];
  const comments: string[] = [];
  const retries: number[] = [];
  const parser = new SseParser(
    { onMessage: (m) => messages.push(m), onComment: (c) => comments.push(c), onRetry: (ms) => retries.push(ms) },
    lastEventId,
  );
  for (const chunk of chunks) parser.push(chunk);
  return { messages, comments, retries, parser };
}

/** Every way of cutting `text` in two, and in single characters. */
function splits(text: string): string[][] {
  const ways: string[][] = [[text], [...text]];
  for (let i = 1; i < text.length; i++) ways.push([text.slice(0, i), text.slice(i)]);
  return ways;
}

const STREAM =
  ': heartbeat\n\n' +
  'id: evt_1\nevent: credits.spent\ndata: {"id":"evt_1","balance":5}\n\n' +
  'id: evt_2\r\nevent: credits.granted\r\ndata: {"a":\r\ndata: 1}\r\n\r\n' +
  'retry: 2500\rid: evt_3\rdata: plain\r\r';

describe('SseParser', () => {
  it('finds the same events, comments and ids however the chunks are split', () => {
    for (const chunks of splits(STREAM)) {
      const { messages, comments, retries, parser } = parse(chunks);
      expect(messages, JSON.stringify(chunks)).toEqual([
        { id: 'evt_1', event: 'credits.spent', data: '{"id":"evt_1","balance":5}' },
        { id: 'evt_2', event: 'credits.granted', data: '{"a":\n1}' },
        { id: 'evt_3', event: 'message', data: 'plain' },
      ]);
      expect(comments).toEqual(['heartbeat']);
      expect(retries).toEqual([2500]);
      expect(parser.lastEventId).toBe('evt_3');
    }
  });

  it('joins multi-line data with newlines, keeps a second space, and takes `data` without a colon as empty', () => {
    const { messages } = parse(['data: one\ndata:two\ndata:  three\ndata\n\n']);
    expect(messages).toEqual([{ id: '', event: 'message', data: 'one\ntwo\n three\n' }]);
  });

  it('dispatches nothing for a block without data, but keeps its id for the events after it', () => {
    const { messages, parser } = parse(['id: evt_9\nevent: ignored\n\n', 'data: x\n\n']);
    expect(messages).toEqual([{ id: 'evt_9', event: 'message', data: 'x' }]);
    expect(parser.lastEventId).toBe('evt_9');
  });

  it('resets the id with an empty `id:`, ignores an id with NUL, and ignores unknown fields and bad retries', () => {
    const { messages, retries } = parse(['id: a\ndata: 1\n\n', 'id\ndata: 2\n\n', 'id: b\0c\nfoo: bar\nretry: 1s\ndata: 3\n\n']);
    expect(messages.map((m) => m.id)).toEqual(['a', '', '']);
    expect(retries).toEqual([]);
  });

  it('keeps a CR at the end of a chunk pending across empty chunks', () => {
    // The LF belongs to the CR: no blank line comes between the two data lines.
    const { messages } = parse(['data: a\r', '', '\n', 'data: b\n\n']);
    expect(messages).toEqual([{ id: '', event: 'message', data: 'a\nb' }]);
  });

  it('skips a byte-order mark at the start only', () => {
    const { messages } = parse(['\uFEFFdata: a\n\n\uFEFFdata: b\n\n']);
    expect(messages).toEqual([{ id: '', event: 'message', data: 'a' }]);
  });

  it('drops an event cut off by the end of the body, and starts clean on the next connection', () => {
    const { messages, parser } = parse(['id: evt_1\ndata: whole\n\n', 'id: evt_2\ndata: cut']);
    parser.end();
    parser.push('data: next\n\n');
    expect(messages).toEqual([
      { id: 'evt_1', event: 'message', data: 'whole' },
      // The cut event's id line was complete, so it counts (as EventSource would resume after it).
      { id: 'evt_2', event: 'message', data: 'next' },
    ]);
  });

  it('starts from the id it is given (a resumed connection)', () => {
    const { messages } = parse(['data: x\n\n'], 'evt_7');
    expect(messages).toEqual([{ id: 'evt_7', event: 'message', data: 'x' }]);
  });
});
