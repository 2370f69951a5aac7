// The usual imports, for a fragment that writes none (`<!-- snippet: prelude=imports -->`): pg,
// everything pg-tenant exports, the adapters, Express and Fastify. A fragment that imports one of
// these names itself must not use this prelude.
import pg from 'pg'
import express from 'express'
import Fastify from 'fastify'
import {
  createTenantPool,
  diagnosticsChannels,
  errorResponseOf,
  httpStatusOf,
  isRlsViolation,
  tenantErrorOf,
  tenantPolicySql,
  rolePolicySql,
  createTenantRoleSql,
  quoteIdentifier,
  TenantPool,
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
  ReleaseError,
  type Tenant,
  type TenantPoolOptions,
} from 'pg-tenant'
import { tenantMiddleware, tenantErrorHandler } from 'pg-tenant/express'
import { tenantPlugin } from 'pg-tenant/fastify'
import { checkRls } from 'pg-tenant/doctor'
