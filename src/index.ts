// Named re-exports only: each module holds one job (see DESIGN.md's layout).
export { createTenantPool, TenantPool } from './pool.js'
export type { TenantPoolOptions, ScopeCallback } from './pool.js'
export type { TenantQuotaOptions } from './options.js'
export type { ScopeMode, Submittable } from './scope/scope.js'
export type { Tenant, RoleMatcher } from './tenant.js'
export type {
  PgPoolLike,
  PgClientLike,
  QueryConfigLike,
  QueryResultLike,
  FieldLike,
  Row,
} from './driver/index.js'
export { tenantStore } from './context.js'
export {
  TenantPoolError,
  TenantRequiredError,
  InvalidTenantError,
  InvalidOptionsError,
  InvalidQueryError,
  RoleNotAllowedError,
  RoleSwitchError,
  ScopeClosedError,
  TenantMismatchError,
  TransactionAbortedError,
  SessionPoolingError,
  InvalidIdentifierError,
  ReleaseError,
  InternalError,
  TenantResolveError,
  TenantQuotaError,
} from './errors.js'
export type { TenantPoolErrorCode, TenantQuotaReason } from './errors.js'
export { isRlsViolation } from './classify/rls-violation.js'
export { tenantErrorOf, httpStatusOf } from './classify/error-status.js'
export { errorResponseOf } from './classify/error-response.js'
export type { ErrorBody, ErrorResponse, ErrorResponseOptions } from './classify/error-response.js'
// The RLS doctor is `pg-tenant/doctor` (checkRls), out of the core bundle; db.doctor() loads it on
// first use. Its types only, for db.doctor()'s signature:
export type {
  CheckRlsOptions,
  Finding,
  FindingCode,
  PoolDoctorOptions,
  QueryableLike,
} from './doctor/types.js'
export {
  tenantPolicySql,
  dropTenantPolicySql,
  rolePolicySql,
  dropRolePolicySql,
  createTenantRoleSql,
  dropTenantRoleSql,
  quoteIdentifier,
} from './sql/index.js'
export type {
  TenantColumnType,
  TenantPolicyOptions,
  RolePolicyOptions,
  DropPolicyOptions,
  PolicyTarget,
  TenantRoleOptions,
} from './sql/index.js'
export { diagnosticsChannels } from './observe/diagnostics.js'
export type {
  TracedScopeKind,
  ScopeMessage,
  ScopeStartMessage,
  ScopeEndMessage,
  QueryMessage,
  ReleaseMessage,
  DestroyMessage,
  TenantPoolStats,
  TenantQuotaStats,
  TenantUsage,
} from './observe/diagnostics.js'
export type { DirtyClient, DestroyReason } from './observe/canary.js'
