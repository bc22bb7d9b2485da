import { describe, expect, it } from 'vitest';
import { csvField, ledgerToCsv } from './csv';

describe('csv', () => {
  it('quotes fields that need it', () => {
    expect(csvField('plain')).toBe('plain');
    expect(csvField('a, b')).toBe('"a, b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField('two\nlines')).toBe('"two\nlines"');
    expect(csvField(null)).toBe('');
    expect(csvField(-5)).toBe('-5');
  });

  it('defuses text a spreadsheet would run as a formula', () => {
    expect(csvField('=HYPERLINK("x")')).toBe(`"'=HYPERLINK(""x"")"`);
    expect(csvField('+1')).toBe("'+1");
    expect(csvField('@cmd')).toBe("'@cmd");
  });

  it('writes a header and one CRLF line per entry', () => {
    const csv = ledgerToCsv([
      {
        id: 'e2',
        created_at: '2026-11-24T10:00:00Z',
        kind: 'spend',
        amount: -5,
        balance_after: 95,
        description: 'Summarize text',
        feature: 'example.summarize',
        quantity: 1,
      },
      { id: 'e1', created_at: '2026-11-24T09:00:00Z', kind: 'purchase', amount: 100, balance_after: 100, description: 'Starter pack, 100' },
    ]);
    expect(csv).toBe(
      'date,kind,amount,balance_after,description,feature,quantity,id\r\n' +
        '2026-11-24T10:00:00Z,spend,-5,95,Summarize text,example.summarize,1,e2\r\n' +
        '2026-11-24T09:00:00Z,purchase,100,100,"Starter pack, 100",,,e1\r\n',
    );
  });
});
