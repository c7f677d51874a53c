// Open the NAM walkthrough in a running JupyterLab with headless Chromium, run every cell, check
// that the explorer renders and answers a click, and take screenshots. Not part of CI.
//
//   NODE_PATH=<a folder with playwright-core installed> node scripts/browser_check.js \
//       http://127.0.0.1:8899 TOKEN NOTEBOOK_PATH_IN_LAB OUT_DIR
// scripts/browser_check.sh starts JupyterLab and calls this.
const { chromium } = require("playwright-core");

const [base, token, notebook, outDir] = process.argv.slice(2);
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"];

async function runAll(page) {
  await page.click("div.lm-MenuBar-itemLabel:text-is('Run')");
  await page.click("div.lm-Menu-itemLabel:text-is('Run All Cells')");
}

async function describe(page) {
  return (await page.locator(".pna-explorer .pna-status").first().textContent()).trim();
}

(async () => {
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: FLAGS });
  const page = await browser.newPage({ viewport: { width: 1500, height: 1100 } });
  page.on("pageerror", (e) => console.log("page error:", e.message));
  await page.goto(`${base}/lab/tree/${notebook}?token=${token}`);
  await page.waitForSelector(".jp-Notebook", { timeout: 120000 });
  await page.waitForSelector(".jp-Notebook-ExecutionIndicator[data-status='idle'], .jp-Notebook", { timeout: 120000 });
  await page.waitForTimeout(5000);  // the kernel starts
  await runAll(page);
  const started = Date.now();
  await page.waitForSelector(".pna-explorer img", { timeout: 900000 });
  console.log(`explorer rendered ${((Date.now() - started) / 1000).toFixed(0)} s after "Run All Cells"`);
  const explorer = page.locator(".pna-explorer").first();
  await explorer.scrollIntoViewIfNeeded();
  await page.waitForTimeout(1500);
  const images = explorer.locator("img");
  console.log(`pictures: ${await images.count()}`);
  const before = await describe(page);
  console.log("before:", before);
  await explorer.screenshot({ path: `${outDir}/explorer_before.png` });

  const picture = images.nth(0);
  const box = await picture.boundingBox();
  console.log(`image shown at ${box.width.toFixed(0)}x${box.height.toFixed(0)} px`);
  const clickAt = { x: box.width * 0.8, y: box.height * 0.25 };
  const t0 = Date.now();
  await picture.click({ position: clickAt });
  await page.waitForFunction((old) => {
    const el = document.querySelector(".pna-explorer .pna-status");
    return el && el.textContent.trim() !== old;
  }, before, { timeout: 20000 });
  console.log(`after click at (${clickAt.x.toFixed(0)}, ${clickAt.y.toFixed(0)}): view changed in ${Date.now() - t0} ms`);
  console.log("after:", await describe(page));
  await page.waitForTimeout(800);
  await explorer.screenshot({ path: `${outDir}/explorer_after_click.png` });

  // stage button P2, then a click on the prediction
  await explorer.locator("button:text-is('P2')").click();
  await page.waitForTimeout(1500);
  console.log("after P2:", await describe(page));
  const prediction = images.nth(1);
  const pbox = await prediction.boundingBox();
  await prediction.click({ position: { x: pbox.width * 0.3, y: pbox.height * 0.6 } });
  await page.waitForTimeout(1500);
  console.log("after click on prediction:", await describe(page));
  await explorer.screenshot({ path: `${outDir}/explorer_p2.png` });

  // the training progress bar (when the notebook trained its model): a widget, not text lines
  const bars = page.locator(".jp-OutputArea-output:has(.widget-hprogress, .widget-progress, .progress)");
  console.log(`outputs holding a progress widget: ${await bars.count()}`);
  if (await bars.count()) {
    await bars.first().scrollIntoViewIfNeeded();
    console.log("progress output:", (await bars.first().innerText()).replace(/\s+/g, " ").slice(0, 200));
    await bars.first().screenshot({ path: `${outDir}/progress.png` });
  }
  await page.screenshot({ path: `${outDir}/page.png`, fullPage: false });
  await browser.close();
})().catch((e) => { console.error(e); process.exit(1); });
