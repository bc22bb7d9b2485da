import type { Customer } from '../../api/client';

/** What an operator knows a customer by: its external id, else its email, name or Tollgate id. */
export function customerLabel(customer: Pick<Customer, 'id' | 'external_id' | 'email' | 'name'>): string {
  return customer.external_id ?? customer.email ?? customer.name ?? customer.id;
}
