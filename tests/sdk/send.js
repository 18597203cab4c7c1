// Sends one person's calls to journeyman through a real analytics library, then flushes.
//
//   node send.js segment|rudderstack URL WRITE_KEY USER_ID ANONYMOUS_ID
//
// The calls: a page view while anonymous, an alias that names the user, an identify, a
// track, a screen, a group. Exits 1, printing why, if the library reports any error.
'use strict';

const [library, url, writeKey, userId, anonymousId] = process.argv.slice(2);
const errors = [];
const done = (error) => {
  if (error) errors.push(String((error && error.message) || error));
};

function open() {
  if (library === 'segment') {
    const { Analytics } = require('@segment/analytics-node');
    const client = new Analytics({ writeKey, host: url, flushAt: 20, maxRetries: 2 });
    client.on('error', done);
    return { client, flush: () => client.closeAndFlush({ timeout: 20000 }) };
  }
  if (library === 'rudderstack') {
    const Analytics = require('@rudderstack/rudder-sdk-node');
    const client = new Analytics(writeKey, {
      dataPlaneUrl: url,
      flushAt: 20,
      retryCount: 2,
      logLevel: 'error',
      errorHandler: done,
    });
    return { client, flush: () => client.flush() };
  }
  throw new Error(`no library ${library}`);
}

async function main() {
  const { client, flush } = open();
  client.page({ anonymousId, name: 'Pricing', category: 'Plans', properties: { plan: 'pro' } }, done);
  client.alias({ userId, previousId: anonymousId }, done);
  client.identify(
    { userId, traits: { plan: 'pro', email: `${userId}@example.com` }, context: { timezone: 'Europe/Amsterdam' } },
    done,
  );
  client.track({ userId, event: 'signed_up', properties: { plan: 'pro' } }, done);
  client.screen({ userId, name: 'Home' }, done);
  client.group({ userId, groupId: `${userId}-team`, traits: { name: `Team of ${userId}`, seats: 3 } }, done);
  await flush();
  if (errors.length) {
    console.error(errors.join('\n'));
    process.exit(1);
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
