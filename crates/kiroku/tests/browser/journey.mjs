// The browser journey: Debian's Chromium, headless, through Kiroku's pages.
// Usage: node journey.mjs BASE_URL ADMIN_NAME PASSWORD TOTP_SECRET SHOT_DIR
// Exits non-zero, naming the step, on the first thing that does not hold.
import { chromium } from "playwright-core";
import { createHmac } from "node:crypto";
import { mkdirSync } from "node:fs";

const [base, name, password, secret, shots] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });

// RFC 6238 with the authenticator defaults: SHA-1, 30 s, 6 digits.
function totp(base32) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const ch of base32.replace(/=+$/, "").toUpperCase()) {
    bits += alphabet.indexOf(ch).toString(2).padStart(5, "0");
  }
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 30000)));
  const mac = createHmac("sha1", key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  const code = (mac.readUInt32BE(offset) & 0x7fffffff) % 1000000;
  return String(code).padStart(6, "0");
}

function check(ok, what) {
  if (!ok) {
    console.error(`FAILED: ${what}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, locale: "ja-JP" });
let dialogs = 0;
page.on("dialog", async (d) => { dialogs += 1; await d.dismiss(); });
const cspErrors = [];
page.on("console", (m) => { if (m.type() === "error") cspErrors.push(m.text()); });

try {
  await page.goto(`${base}/login`);
  await page.screenshot({ path: `${shots}/login.png`, fullPage: true });
  await page.fill("input[name=name]", name);
  await page.fill("input[name=password]", password);
  await page.fill("input[name=totp_code]", totp(secret));
  await Promise.all([page.waitForURL(`${base}/`), page.click("button[type=submit]")]);
  check((await page.textContent("h1")).includes("ダッシュボード"), "logged in with TOTP, dashboard shown");

  const title = "<script>alert(1)</script> DB接続不可";
  await page.goto(`${base}/incidents/new`);
  await page.fill("input[name=title]", title);
  await page.selectOption("select[name=category]", "database");
  await page.selectOption("select[name=severity]", "P1");
  await page.fill("textarea[name=summary]", "全機能が応答不能");
  await page.fill("input[name=services]", "api");
  await Promise.all([page.waitForURL(/\/incidents\/DB-/), page.click("form.stack button[type=submit]")]);
  check((await page.textContent("#incident-title")) === title, "a hostile title renders as text");
  check(dialogs === 0, "no script ran from the title");
  const url = page.url();

  await Promise.all([page.waitForURL(url), page.click("button[data-action=acknowledge]")]);
  check((await page.textContent("#incident-status")) === "acknowledged", "acknowledged");
  await page.fill("#note-body", "接続プール枯渇を確認");
  await Promise.all([page.waitForURL(url), page.click("#note-save")]);
  check((await page.textContent("#timeline")).includes("接続プール枯渇を確認"), "note on the timeline");
  // The page's script localises times once it runs, and again in each
  // timeline it fetches: wait for it rather than race it.
  const shown = await page
    .waitForSelector('#timeline time[data-localised="1"]', { timeout: 5000 })
    .then(() => true, () => false);
  check(shown, "times shown in the reader's zone");
  await Promise.all([page.waitForURL(url), page.click("button[data-action=resolve]")]);
  check((await page.textContent("#incident-status")) === "resolved", "resolved");
  await page.screenshot({ path: `${shots}/incident.png`, fullPage: true });

  await page.click("#postmortem-link");
  await page.fill("textarea[name=direct_cause]", "接続プール枯渇");
  await page.fill("textarea[name=measures]", "short | 接続プール監視アラートを追加 | admin | 2026-12-20");
  await Promise.all([page.waitForURL(/\/postmortem$/), page.click("#pm-save")]);
  check((await page.textContent("#pm-version")) === "1", "postmortem saved");
  await Promise.all([page.waitForURL(/\/postmortem$/), page.click("#approve")]);
  check((await page.textContent("#pm-stage")) === "final", "postmortem approved and final");
  check((await page.textContent("#pm-hash")).length === 64, "its SHA-256 shown");
  await page.screenshot({ path: `${shots}/postmortem.png`, fullPage: true });

  await page.goto(`${url}/reports/shimatsusho`);
  const frame = page.frameLocator("iframe.report");
  check((await frame.locator("h1").textContent()).includes("始末書"), "the report previews in the page");
  await page.screenshot({ path: `${shots}/report.png`, fullPage: true });

  const pdf = await page.request.get(`${url.replace("/incidents/", "/api/v1/incidents/")}/reports/db-incident.pdf`);
  check(pdf.status() === 200 || pdf.status() === 503, `report download answered ${pdf.status()}`);
  if (pdf.status() === 200) {
    const bytes = await pdf.body();
    check(bytes.subarray(0, 5).toString() === "%PDF-", "the PDF downloads");
  }

  await page.goto(`${base}/audit?action=postmortem_finalise`);
  check((await page.textContent("#audit-events")).includes("postmortem_finalise"), "the audit log finds the finalisation");
  await page.screenshot({ path: `${shots}/audit.png`, fullPage: true });

  await page.goto(`${base}/incidents?q=DB`);
  await page.screenshot({ path: `${shots}/incidents.png`, fullPage: true });
  await page.goto(`${base}/`);
  await page.screenshot({ path: `${shots}/dashboard.png`, fullPage: true });
  // A measurement, not a check: the benchmark's figure is printed here.
  const paint = await page.evaluate(() => {
    const p = performance.getEntriesByName("first-contentful-paint")[0];
    return p ? Math.round(p.startTime) : -1;
  });
  console.log(`measured: dashboard first contentful paint ${paint} ms`);
  for (const name of ["alerts", "integrations", "schedules", "policies", "users"]) {
    await page.goto(`${base}/${name}`);
    await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
  }
  await page.goto(`${base}/?lang=en`);
  check((await page.textContent("h1")) === "Dashboard", "English by the switch");
  await page.goto(`${base}/status`);
  await page.screenshot({ path: `${shots}/status.png`, fullPage: true });
  check(!(await page.content()).includes("接続プール枯渇"), "the status page shows no internal note");
  check(cspErrors.length === 0, `no console errors (${cspErrors.join("; ")})`);
  await browser.close();
} catch (e) {
  console.error(`FAILED: ${e.message}`);
  await page.screenshot({ path: `${shots}/failure.png`, fullPage: true }).catch(() => {});
  await browser.close();
  process.exit(1);
}
