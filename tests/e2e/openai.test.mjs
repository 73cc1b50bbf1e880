// openai.test.mjs — the official openai npm client against kvchat-engine
// with the tiny (random-weight) model: what an application written for
// OpenAI does, through the SDK's own parsing and error classes.
//
//   node openai.test.mjs --bin DIR --model tiny.gguf --modules node_modules --screenshots DIR
//
// Models (list, retrieve, a 404 as NotFoundError), chat completions with
// system_fingerprint, streamed usage only when asked, structured outputs
// through chat.completions.parse (the parsed object matches its schema
// even from random weights), completions of several prompts and of token
// ids with echo, logprobs, a named tool call, a prompt that does not fit as context_length_exceeded, and
// fields the engine cannot honour refused as BadRequestError.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { alive, args, check, freePort, log, until } from './harness.mjs';

const OpenAI = createRequire(path.join(args.modules, 'noop.js'))('openai').default;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvchat-openai-'));
const port = await freePort();
const engine = spawn(path.join(args.bin, 'kvchat-engine'), [
  '--model', args.model, '--threads', '2', '--ctx-size', '2048', '--parallel', '2',
  '--cache-dir', path.join(dir, 'kv'), '--port', String(port), '--log-file', path.join(dir, 'engine.log'),
], { stdio: 'ignore' });

const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'unused', maxRetries: 0 });

async function refused(what, fn, code) {
  try {
    await fn();
  } catch (err) {
    check(err instanceof OpenAI.BadRequestError, `${what}: expected a BadRequestError, got ${err}`);
    if (code) check(err.code === code, `${what}: code ${err.code}, expected ${code}`);
    return err;
  }
  throw new Error(`${what}: accepted`);
}

const weather = {
  type: 'object',
  properties: {
    city: { type: 'string', maxLength: 12 },
    temp: { type: 'integer' },
    unit: { type: 'string', enum: ['C', 'F'] },
    tags: { type: 'array', items: { type: 'boolean' }, maxItems: 3 },
  },
  required: ['city', 'temp', 'unit', 'tags'],
  additionalProperties: false,
};

function matchesWeather(v) {
  return v && typeof v === 'object' && !Array.isArray(v) &&
    Object.keys(v).join(',') === 'city,temp,unit,tags' &&
    typeof v.city === 'string' && [...v.city].length <= 12 && Number.isInteger(v.temp) &&
    ['C', 'F'].includes(v.unit) && Array.isArray(v.tags) && v.tags.length <= 3 &&
    v.tags.every((t) => typeof t === 'boolean');
}

let failed = false;
try {
  await until(async () => (await fetch(`http://127.0.0.1:${port}/health`)).ok, 'the engine to load', 60_000);

  log('models');
  const models = await client.models.list();
  const id = models.data[0].id;
  check((await client.models.retrieve(id)).id === id, 'models.retrieve gives the model');
  try {
    await client.models.retrieve('gpt-4o');
    throw new Error('models.retrieve of another model answered');
  } catch (err) {
    check(err instanceof OpenAI.NotFoundError, `another model: ${err}`);
  }

  log('chat, and streamed usage only when asked');
  const c = await client.chat.completions.create({ model: id, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 4 });
  check(/^fp_/.test(c.system_fingerprint), `system_fingerprint ${c.system_fingerprint}`);
  check(c.usage.completion_tokens === 4, 'usage of a chat');
  for (const asked of [false, true]) {
    const stream = await client.chat.completions.create({
      model: id, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 4, stream: true,
      ...(asked ? { stream_options: { include_usage: true } } : {}),
    });
    let usage = null, text = '', usageWithChoices = false;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      if (chunk.usage) {
        usage = chunk.usage;
        usageWithChoices ||= chunk.choices.length > 0;
      }
    }
    check(!usageWithChoices, 'usage comes in a chunk of its own');
    check(asked ? usage?.completion_tokens === 4 : usage === null, `streamed usage (asked: ${asked}): ${JSON.stringify(usage)}`);
  }

  log('logprobs');
  const lp = await client.chat.completions.create({
    model: id, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 4, temperature: 0, logprobs: true, top_logprobs: 2,
  });
  const entries = lp.choices[0].logprobs.content;
  check(entries.length === lp.usage.completion_tokens, `an entry per token: ${entries.length}`);
  check(entries.every((e) => e.logprob <= 0 && e.top_logprobs.length === 2 && e.top_logprobs[0].token === e.token),
    'greedy: the chosen token is the most likely');
  check(entries.map((e) => e.token).join('') === lp.choices[0].message.content, 'the tokens spell the answer');

  log('structured outputs: chat.completions.parse');
  for (const [temperature, seed] of [[0, 1], [0.9, 2], [0.9, 3]]) {
    const r = await client.chat.completions.parse({
      model: id, messages: [{ role: 'user', content: 'The weather, as JSON.' }], max_tokens: 300, temperature, seed,
      response_format: { type: 'json_schema', json_schema: { name: 'weather', strict: true, schema: weather } },
    });
    const m = r.choices[0].message;
    check(r.choices[0].finish_reason === 'stop', `finish_reason ${r.choices[0].finish_reason}`);
    check(matchesWeather(m.parsed), `parsed ${JSON.stringify(m.parsed)} from ${m.content}`);
  }
  await refused('an unsupported schema keyword', () => client.chat.completions.create({
    model: id, messages: [{ role: 'user', content: 'x' }],
    response_format: { type: 'json_schema', json_schema: { name: 'z', schema: { type: 'string', pattern: '^a+$' } } },
  }));

  log('tool calls: a named tool_choice');
  const tools = [{
    type: 'function',
    function: {
      name: 'get_weather', description: 'The weather of a city',
      parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 10 }, unit: { enum: ['C', 'F'] } }, required: ['city', 'unit'], additionalProperties: false },
    },
  }, { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: { tz: { type: 'string', maxLength: 6 } }, required: ['tz'] } } }];
  const tc = await client.chat.completions.create({
    model: id, messages: [{ role: 'user', content: 'Weather in Paris?' }], max_tokens: 200, tools,
    tool_choice: { type: 'function', function: { name: 'get_weather' } }, parallel_tool_calls: false,
  });
  check(tc.choices[0].finish_reason === 'tool_calls', `finish_reason ${tc.choices[0].finish_reason}`);
  const call = tc.choices[0].message.tool_calls?.[0];
  check(call?.function?.name === 'get_weather' && /^call_/.test(call.id), `the named call: ${JSON.stringify(call)}`);
  const a = JSON.parse(call.function.arguments);
  check(typeof a.city === 'string' && ['C', 'F'].includes(a.unit) && Object.keys(a).join(',') === 'city,unit', `arguments ${call.function.arguments}`);
  const after = await client.chat.completions.create({
    model: id, max_tokens: 3, tools, tool_choice: 'none',
    messages: [{ role: 'user', content: 'Weather in Paris?' }, tc.choices[0].message, { role: 'tool', tool_call_id: call.id, content: '21 C' }],
  });
  check(typeof after.choices[0].message.content === 'string', 'the conversation goes on after the result');

  log('completions: several prompts, token ids, echo');
  const two = await client.completions.create({ model: id, prompt: ['The cat', 'A dog'], max_tokens: 3, temperature: 0 });
  check(two.choices.length === 2 && two.choices[1].index === 1, 'a choice per prompt');
  const alone = await client.completions.create({ model: id, prompt: 'A dog', max_tokens: 3, temperature: 0 });
  check(two.choices[1].text === alone.choices[0].text, 'each prompt answered as alone');
  const ids = await (await fetch(`http://127.0.0.1:${port}/tokenize`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ content: 'A dog' }),
  })).json();
  const byIds = await client.completions.create({ model: id, prompt: [ids.tokens, ids.tokens], max_tokens: 3, temperature: 0, echo: true });
  check(byIds.choices.length === 2, 'arrays of token ids');
  check(byIds.choices[0].text === `A dog${alone.choices[0].text}`, `echo: ${JSON.stringify(byIds.choices[0].text)}`);

  log('n choices and logit_bias');
  const b = await (await fetch(`http://127.0.0.1:${port}/tokenize`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ content: 'b' }),
  })).json();
  check(b.tokens.length === 1, 'b is one token');
  const nb = await client.chat.completions.create({
    model: id, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 3, n: 2, seed: 4,
    logit_bias: { [b.tokens[0]]: 100 },
  });
  check(nb.choices.length === 2 && nb.choices.map((ch) => ch.index).join() === '0,1', 'two choices, in order');
  check(nb.choices.every((ch) => ch.message.content === 'bbb'), `biased to b: ${nb.choices.map((ch) => ch.message.content)}`);
  check(nb.usage.completion_tokens === 6, `usage of both: ${JSON.stringify(nb.usage)}`);

  log('errors an application can act on');
  const long = await refused('a prompt longer than the context', () => client.chat.completions.create({
    model: id, messages: [{ role: 'user', content: 'word '.repeat(3000) }],
  }), 'context_length_exceeded');
  check(/1024 tokens/.test(long.message) && /prompt has \d{4} tokens/.test(long.message), `both numbers: ${long.message}`);
  await refused('max_tokens 0', () => client.chat.completions.create({ model: id, messages: [{ role: 'user', content: 'x' }], max_tokens: 0 }));
  await refused('suffix', () => client.completions.create({ model: id, prompt: 'def f(', suffix: 'return x' }));
  log('all passed');
} catch (err) {
  failed = true;
  console.error(`FAILED: ${err.stack || err}`);
  try {
    console.error(fs.readFileSync(path.join(dir, 'engine.log'), 'utf8').split('\n').slice(-30).join('\n'));
  } catch {}
} finally {
  if (alive(engine.pid)) engine.kill('SIGTERM');
  await until(() => !alive(engine.pid) || engine.exitCode !== null, 'the engine to stop', 20_000).catch(() => engine.kill('SIGKILL'));
  fs.rmSync(dir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
