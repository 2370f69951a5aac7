/**
 * SESSION_SCOPE_BEHIND_PROXY (warning): scope 'session', no `pgbouncer` declared, and the
 * connection looks proxied: the server sees another client port (`inet_client_port()`) than the
 * local port of the node-postgres socket, so a pooler or NAT sits in between. A Unix socket, or a
 * driver without a visible socket, cannot be told. Fix: scope 'transaction', or declare
 * `pgbouncer: 'session'`.
 */
import { localPortOf } from '../../driver/index.js'
import type { Rule } from '../rule.js'

export const sessionScopeBehindProxy: Rule<'connection', 'SESSION_SCOPE_BEHIND_PROXY'> = {
  code: 'SESSION_SCOPE_BEHIND_PROXY',
  subject: 'connection',
  reads: "readLogin: inet_client_port(); the client's local port (the driver's localPortOf)",
  check({ client }, { opts, login }) {
    if (opts.scope !== 'session' || opts.pgbouncer !== undefined) return undefined
    if (!isProxied(client, login.client_port)) return undefined
    return {
      severity: 'warning',
      code: 'SESSION_SCOPE_BEHIND_PROXY',
      object: 'connection',
      message: `the server sees this connection coming from another port than the one this client uses, so a proxy (PgBouncer, a cloud pooler) or NAT sits in between. If it pools in transaction or statement mode, scope 'session' can run a query on a server connection set up for another tenant`,
      fix: `-- use scope: 'transaction' in createTenantPool, or make sure the pooler runs in session mode\n-- and pass pgbouncer: 'session' (CLI: --pgbouncer session) to record that`,
    }
  },
}

/** Whether the server sees another client port than our socket's: a proxy or NAT in between. */
function isProxied(client: unknown, serverSeenPort: number | null): boolean {
  const localPort = localPortOf(client)
  if (localPort === undefined) return false // Unix socket or unknown driver: cannot tell
  return serverSeenPort === null || Number(serverSeenPort) !== localPort
}
