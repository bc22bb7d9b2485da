/** Leaves the SPA for another page (Stripe checkout, the billing portal). A seam for tests. */
export const browser = {
  assign(url: string): void {
    window.location.assign(url);
  },
};
