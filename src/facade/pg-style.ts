/**
 * pg's calling conventions, which the facade and its clients accept as pg does: `query(text,
 * values?, callback?)`, or a config object, and a promise when no callback is given.
 */
import type { QueryConfigLike } from '../driver/index.js'

export type Callback<T> = (err: Error | undefined, result?: T) => void

/** Splits pg's `query(text, values?, callback?)` arguments. */
export function splitArgs(values: unknown, callback: unknown): [readonly unknown[] | undefined, Callback<unknown> | undefined] {
  if (typeof values === 'function') return [undefined, values as Callback<unknown>]
  return [values as readonly unknown[] | undefined, callback as Callback<unknown> | undefined]
}

/** Runs a promise-returning call in pg's promise or callback style. */
export function settle(promise: Promise<unknown>, callback: Callback<unknown> | undefined): Promise<unknown> | undefined {
  if (!callback) return promise
  promise.then(
    (result) => callback(undefined, result),
    (err: Error) => callback(err),
  )
  return undefined
}

/** The SQL text of `query`'s first argument, or undefined when it is neither text nor a config. */
export function textOf(textOrConfig: unknown): string | undefined {
  if (typeof textOrConfig === 'string') return textOrConfig
  const text = (textOrConfig as { text?: unknown } | null)?.text
  return typeof text === 'string' ? text : undefined
}

/** A config object for the statement, with `values` from the second argument when given. */
export function configOf(textOrConfig: unknown, text: string, values: readonly unknown[] | undefined): QueryConfigLike {
  if (typeof textOrConfig === 'string') return values === undefined ? { text } : { text, values }
  return values === undefined ? (textOrConfig as QueryConfigLike) : { ...(textOrConfig as QueryConfigLike), values }
}
