// Shared by the end-to-end tests: the system Chromium, started as this machine needs it.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const baseUrl = process.env.VITRINA_URL;

const options = {
  executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
  // Without the networking flags Chromium keeps calling home, which this network refuses.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
};

export async function launchBrowser() {
  assert.ok(baseUrl, 'VITRINA_URL is not set: run these tests with `cargo xtask test`');
  return chromium.launch(options);
}

/// A browser profile kept on disk, as a visitor's is: its storage holds a model of hundreds of
/// MB (a fresh context's, like a private window's, holds far less).
/// Closing it deletes the profile.
export async function launchProfile() {
  const dir = await mkdtemp(join(tmpdir(), 'vitrina-profile-'));
  const context = await chromium.launchPersistentContext(dir, options);
  const close = context.close.bind(context);
  context.close = async () => {
    await close();
    await rm(dir, { recursive: true, force: true });
  };
  return context;
}
