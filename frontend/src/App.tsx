import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { useState, type ReactNode } from 'react';
import { Link, Outlet, Route, Routes } from 'react-router';
import { ApiError } from './api/errors';
import { LiveProvider, signedInStream } from './api/live';
import { AuthProvider, useUser } from './auth/AuthProvider';
import { RequireAuth } from './auth/RequireAuth';
import { Layout } from './components/Layout';
import { SandboxBanner } from './components/SandboxBanner';
import { PageHeader } from './components/ui';
import { AdminPage } from './pages/AdminPage';
import { ApiKeysPage } from './pages/ApiKeysPage';
import { SignInPage, SignUpPage } from './pages/AuthPages';
import { CreditsPage } from './pages/CreditsPage';
import { DashboardPage } from './pages/DashboardPage';
import { ExamplePage } from './pages/ExamplePage';
import { HistoryPage } from './pages/HistoryPage';
import { HostedPage } from './pages/HostedPage';
import { useDocumentTitle } from './lib/useDocumentTitle';

export function createQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      queries: {
        staleTime: 10_000,
        // Client errors (4xx) will not change on retry; network and server errors may.
        retry: (count, error) => !(error instanceof ApiError && error.status >= 400 && error.status < 500) && count < 2,
      },
      mutations: { retry: false },
    },
  });
}

function NotFoundPage() {
  useDocumentTitle('Not found');
  return (
    <>
      <PageHeader title="Page not found" description="There is nothing at this address." />
      <Link to="/" className="font-semibold text-brand-700 hover:underline">
        Go to the dashboard
      </Link>
    </>
  );
}

/** One live stream of the wallet's events for all the signed-in pages (per user). */
function Live({ children }: { children: ReactNode }) {
  const user = useUser();
  return (
    <LiveProvider key={user.id} source={signedInStream}>
      {children}
    </LiveProvider>
  );
}

/** The signed-in app's pages share one session; the hosted portal stays outside it. */
function WithSession() {
  return (
    <AuthProvider>
      <Outlet />
    </AuthProvider>
  );
}

export function AppRoutes() {
  return (
    <Routes>
      {/* A customer's billing page, opened from a portal link: no account, no app around it. */}
      <Route path="/hosted" element={<HostedPage />} />
      <Route element={<WithSession />}>
        <Route path="/sign-in" element={<SignInPage />} />
        <Route path="/sign-up" element={<SignUpPage />} />
        <Route
          element={
            <RequireAuth>
              <Live>
                <Layout />
              </Live>
            </RequireAuth>
          }
        >
          <Route index element={<DashboardPage />} />
          <Route path="credits" element={<CreditsPage />} />
          <Route path="example" element={<ExamplePage />} />
          <Route path="history" element={<HistoryPage />} />
          <Route path="api-keys" element={<ApiKeysPage />} />
          <Route path="admin" element={<AdminPage />} />
          <Route path="*" element={<NotFoundPage />} />
        </Route>
      </Route>
    </Routes>
  );
}

/** Everything but the router, so tests can wrap it in a MemoryRouter. */
export function AppProviders({ children, queryClient }: { children: ReactNode; queryClient?: QueryClient }) {
  const [client] = useState(() => queryClient ?? createQueryClient());
  return (
    <QueryClientProvider client={client}>
      <SandboxBanner />
      {children}
    </QueryClientProvider>
  );
}
