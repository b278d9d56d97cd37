// node --import test/push/module-probe.mjs …: every module URL the process resolves is appended to
// $SL_MODULE_LOG, one per line (what a command loads, for tests that keep the start-up lean).
import {register} from 'node:module'

register(new URL('./module-probe-hooks.mjs', import.meta.url), {data: {log: process.env.SL_MODULE_LOG}})
