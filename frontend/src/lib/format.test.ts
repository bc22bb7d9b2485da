import { describe, expect, it } from 'vitest';
import {
  formatCredits,
  formatInterval,
  formatKind,
  formatMoney,
  formatNumber,
  formatPricePerCredit,
  formatSignedCredits,
  minorUnitsPerMajor,
} from './format';

describe('formatMoney', () => {
  it('reads minor units as the currency’s major unit', () => {
    expect(formatMoney(500, 'usd', 'en-US')).toBe('$5.00');
    expect(formatMoney(1999, 'usd', 'en-US')).toBe('$19.99');
    expect(formatMoney(15000, 'USD', 'en-US')).toBe('$150.00');
    expect(formatMoney(0, 'usd', 'en-US')).toBe('$0.00');
  });

  it('knows currencies without minor units', () => {
    expect(minorUnitsPerMajor('jpy')).toBe(1);
    expect(formatMoney(500, 'jpy', 'en-US')).toBe('¥500');
    expect(minorUnitsPerMajor('usd')).toBe(100);
  });

  it('follows the locale', () => {
    expect(formatMoney(123456, 'eur', 'de-DE')).toBe('1.234,56\u00a0€');
    expect(formatMoney(2000, 'gbp', 'en-GB')).toBe('£20.00');
  });
});

describe('formatPricePerCredit', () => {
  it('keeps the digits that tell packs apart', () => {
    expect(formatPricePerCredit(500, 100, 'usd', 'en-US')).toBe('$0.05');
    expect(formatPricePerCredit(7000, 2000, 'usd', 'en-US')).toBe('$0.035');
    expect(formatPricePerCredit(1000, 3, 'usd', 'en-US')).toBe('$3.3333');
  });

  it('is empty for a price without credits', () => {
    expect(formatPricePerCredit(500, 0, 'usd', 'en-US')).toBe('');
  });
});

describe('credits', () => {
  it('counts credits with grouping and the right plural', () => {
    expect(formatCredits(0, 'en-US')).toBe('0 credits');
    expect(formatCredits(1, 'en-US')).toBe('1 credit');
    expect(formatCredits(-1, 'en-US')).toBe('-1 credit');
    expect(formatCredits(1234, 'en-US')).toBe('1,234 credits');
    expect(formatNumber(15000, 'en-US')).toBe('15,000');
  });

  it('signs ledger amounts', () => {
    expect(formatSignedCredits(100, 'en-US')).toBe('+100');
    expect(formatSignedCredits(-5, 'en-US')).toBe('-5');
    expect(formatSignedCredits(0, 'en-US')).toBe('0');
    expect(formatSignedCredits(2500, 'en-US')).toBe('+2,500');
  });
});

describe('words', () => {
  it('names billing intervals', () => {
    expect(formatInterval('month')).toBe('per month');
    expect(formatInterval('year')).toBe('per year');
    expect(formatInterval(null)).toBe('');
  });

  it('turns ledger kinds into words', () => {
    expect(formatKind('spend')).toBe('Spend');
    expect(formatKind('dispute_freeze')).toBe('Dispute freeze');
    expect(formatKind('write_off')).toBe('Write off');
  });
});
