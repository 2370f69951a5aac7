/**
 * The one AsyncLocalStorage of the package, and what it holds.
 *
 * There must be exactly one store per process, whichever build or entry loaded this module (ESM,
 * CJS, a subpath adapter with its own copy): a tenant bound through one copy must be seen by the
 * others. So the store lives on `globalThis` under a registered symbol, not in module scope.
 *
 * The store is read once, when a public method is called, never inside pool events or query
 * callbacks: pg-pool resolves a waiting `connect()` in the context of whoever released the client.
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import type { Scope } from './scope/scope.js'
import type { ResolvedTenant } from './tenant.js'

/** What a TenantPool has bound in the current async context. */
export type Binding =
  /** `runWithTenant`: identity only; each query runs alone, scoped. */
  | { readonly kind: 'identity'; readonly tenant: ResolvedTenant }
  /** `withTenant` / `transaction`: one client, one scope. `depth` counts open transactions. */
  | {
      readonly kind: 'scope'
      readonly tenant: ResolvedTenant
      readonly scope: Scope
      readonly depth: number
    }
  /** `withoutTenant`: the caller opted out of tenant scoping explicitly. */
  | { readonly kind: 'none' }

/**
 * One link per binding. Each TenantPool finds its own binding by walking up, so two pools (two
 * databases) in one process never see each other's tenant.
 */
interface Frame {
  readonly owner: object
  readonly binding: Binding
  readonly parent: Frame | undefined
}

const STORE_KEY = Symbol.for('pg-tenant.context.v1')

type GlobalWithStore = typeof globalThis & { [STORE_KEY]?: AsyncLocalStorage<Frame> }

function sharedStore(): AsyncLocalStorage<Frame> {
  const global = globalThis as GlobalWithStore
  global[STORE_KEY] ??= new AsyncLocalStorage<Frame>()
  return global[STORE_KEY]
}

const store = sharedStore()

/** The binding `owner` has in the current async context, if any. Read it once, at call time. */
export function currentBinding(owner: object): Binding | undefined {
  for (let frame = store.getStore(); frame !== undefined; frame = frame.parent) {
    if (frame.owner === owner) return frame.binding
  }
  return undefined
}

/** Runs `fn` with `binding` in force for `owner`, leaving other owners' bindings visible. */
export function runBound<T>(owner: object, binding: Binding, fn: () => T): T {
  return store.run({ owner, binding, parent: store.getStore() }, fn)
}

/**
 * The package's single AsyncLocalStorage, shared by every copy of pg-tenant loaded in this process
 * (ESM and CJS builds, subpath entries). Its value is opaque. It is exported for diagnostics and
 * for framework authors who need to check that their framework carries async context across a
 * boundary: `tenantStore().getStore() !== undefined` inside a scope.
 *
 * @example
 * ```ts
 * import { tenantStore } from 'pg-tenant'
 * await db.withTenant('org_1', async () => {
 *   assert(tenantStore().getStore() !== undefined)
 * })
 * ```
 */
export function tenantStore(): AsyncLocalStorage<unknown> {
  return store as AsyncLocalStorage<unknown>
}
