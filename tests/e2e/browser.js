// Shared by the end-to-end tests: the system Chromium, started as this machine needs it.
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

export const baseUrl = process.env.VITRINA_URL;

export async function launchBrowser() {
  assert.ok(baseUrl, 'VITRINA_URL is not set: run these tests with `cargo xtask test`');
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    // Without the networking flags Chromium keeps calling home, which this network refuses.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
