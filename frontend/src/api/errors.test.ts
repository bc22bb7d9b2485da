import { describe, expect, it } from 'vitest';
import { ApiError, errorMessage, formErrors, type Problem } from './errors';

const validation: Problem = {
  type: 'urn:tollgate:problem:validation_failed',
  title: 'Validation failed',
  status: 422,
  detail: '2 fields are invalid',
  code: 'validation_failed',
  request_id: 'r1',
  errors: [
    { field: 'email', code: 'email', message: 'email is not a valid email address' },
    { field: 'password', code: 'length', message: 'password must be at least 8 characters' },
  ],
};

describe('formErrors', () => {
  it('puts each field’s message by its field, as a sentence', () => {
    const result = formErrors(new ApiError(validation), ['email', 'password']);
    expect(result.fields).toEqual({
      email: 'Email is not a valid email address',
      password: 'Password must be at least 8 characters',
    });
    expect(result.general).toBeNull();
  });

  it('shows messages for fields the form does not have as a general error', () => {
    const result = formErrors(new ApiError(validation), ['email']);
    expect(result.fields).toEqual({ email: 'Email is not a valid email address' });
    expect(result.general).toBe('Password must be at least 8 characters');
  });

  it('falls back to the detail when no field is named', () => {
    const error = new ApiError({ ...validation, status: 401, code: 'invalid_credentials', detail: 'the email or password is wrong', errors: null });
    expect(formErrors(error, ['email'])).toEqual({ fields: {}, general: 'The email or password is wrong' });
  });

  it('has nothing to say without an error', () => {
    expect(formErrors(null, ['email'])).toEqual({ fields: {}, general: null });
  });
});

describe('ApiError', () => {
  it('keeps the problem of a problem+json answer', () => {
    const error = ApiError.fromResponse(new Response(null, { status: 422 }), validation);
    expect(error.status).toBe(422);
    expect(error.code).toBe('validation_failed');
    expect(error.problem.errors).toHaveLength(2);
  });

  it('stands in for answers that are not problem details', () => {
    const error = ApiError.fromResponse(new Response('<html>', { status: 502, headers: { 'x-request-id': 'abc' } }), '<html>');
    expect(error.code).toBe('server_error');
    expect(error.problem.request_id).toBe('abc');
    expect(errorMessage(error)).toBe('Tollgate had a problem answering. Try again in a moment.');
  });

  it('describes network failures', () => {
    expect(errorMessage(ApiError.network(new TypeError('Failed to fetch')))).toBe(
      'Could not reach Tollgate. Check your connection and try again.',
    );
  });
});
