// The message lifecycle on the page: replies with their quote, reactions,
// edits and deletes, each shown live on the other side and still there when
// the other side comes back.
import assert from "node:assert/strict";
import { test } from "node:test";
import { join } from "node:path";
import { joinRoom, openConversation, say, shots, signIn, signInWith, suite } from "./harness.mjs";

const running = suite();

/** The message with server id `id` on `page`. */
const byId = (page, id) => page.locator(`#messages li[data-id="${id}"]`);

/** Says `text` and answers the id the server gave the message. */
async function post(page, text) {
  await say(page, text);
  const mine = page.locator("#messages li.mine", { hasText: text }).last();
  await mine.locator(".ticks").waitFor();
  return mine.getAttribute("data-id");
}

/** Clicks the button labelled `label` on message `id` (the actions show on hover). */
async function act(page, id, label) {
  await byId(page, id).getByRole("button", { name: label, exact: true }).click();
}

async function react(page, id, emoji) {
  await act(page, id, "React");
  await act(page, id, `React with ${emoji}`);
}

async function remove(page, id) {
  await act(page, id, "Delete");
  await act(page, id, "Delete for everyone");
}

test("a direct conversation: bob answers with a quote, both react, alice edits; what alice deletes while bob is away is gone when he is back, and his count with it", async () => {
  const alice = await signIn(running.browser, running.server.url, "alice11");
  let bob = await signIn(running.browser, running.server.url, "bob11");
  await openConversation(alice, "bob11");
  const plan = await post(alice, "see you at 5");
  await openConversation(bob, "alice11");
  await byId(bob, plan).waitFor();

  // A reply carries the quote of the original.
  await act(bob, plan, "Reply");
  await bob.locator("#compose-context", { hasText: "Replying to alice11" }).waitFor();
  const reply = await post(bob, "make it 6?");
  for (const page of [alice, bob]) {
    const quote = byId(page, reply).locator("blockquote.quote");
    await quote.locator(".excerpt", { hasText: "see you at 5" }).waitFor();
    assert.equal(await quote.locator(".quote-from").textContent(), "alice11");
  }
  assert.equal(await bob.locator("#compose-context").isVisible(), false, "the reply bar goes once sent");

  // Reactions: one each, counted on both sides, mine shown as chosen.
  await react(alice, reply, "👍");
  await byId(bob, reply).locator(".reaction", { hasText: "👍 1" }).waitFor();
  await byId(bob, reply).locator(".reaction", { hasText: "👍 1" }).click();
  for (const page of [alice, bob]) {
    await byId(page, reply).locator('.reaction.chosen[aria-pressed="true"]', { hasText: "👍 2" }).waitFor();
  }

  // An edit replaces the text on both sides, marked as edited.
  await act(alice, plan, "Edit");
  assert.equal(await alice.inputValue("#text"), "see you at 5", "the composer holds the text to edit");
  await alice.fill("#text", "see you at 6");
  await alice.press("#text", "Enter");
  for (const page of [alice, bob]) {
    await byId(page, plan).locator(".body", { hasText: "see you at 6" }).waitFor();
    await byId(page, plan).locator(".edited").waitFor();
  }
  await bob.screenshot({ path: join(shots, "lifecycle-reply-react-edit.png") });

  // Bob goes away; alice writes twice, deletes one of those and the plan.
  const context = bob.context();
  await bob.close();
  await post(alice, "one more thing");
  const mistake = await post(alice, "wrong chat, sorry");
  await remove(alice, mistake);
  await remove(alice, plan);
  for (const id of [mistake, plan]) await byId(alice, id).locator(".tombstone").waitFor();

  // Back: of alice's two new messages one is unread; the deleted one is not.
  bob = await signInWith(context, running.server.url, "bob11");
  const badge = bob.locator('button.conversation[data-peer="alice11"] .badge');
  await badge.filter({ hasText: /^1$/ }).waitFor();
  await openConversation(bob, "alice11");
  await byId(bob, plan).locator(".tombstone", { hasText: "message deleted" }).waitFor();
  await byId(bob, mistake).locator(".tombstone").waitFor();
  await byId(bob, reply).locator("blockquote.quote.deleted .excerpt", { hasText: "deleted message" }).waitFor();
  await byId(bob, reply).locator(".reaction", { hasText: "👍 2" }).waitFor();
  await bob.locator("#messages li", { hasText: "one more thing" }).waitFor();
  const shown = await bob.locator("#messages").textContent();
  for (const gone of ["see you at", "wrong chat"]) assert.ok(!shown.includes(gone), `"${gone}" is gone from bob's page`);
  await bob.screenshot({ path: join(shots, "lifecycle-deleted.png") });
  await alice.context().close();
  await context.close();
});

test("a room: the owner deletes a member's message, a reaction shows live, and a deleted message leaves the unread count of a member looking elsewhere", async () => {
  const alice = await signIn(running.browser, running.server.url, "alice12");
  const bob = await signIn(running.browser, running.server.url, "bob12");
  await joinRoom(alice, "crew");
  await joinRoom(bob, "crew");
  await alice.locator("#members li", { hasText: "bob12" }).waitFor();

  const offTopic = await post(bob, "anyone selling tickets?");
  await byId(alice, offTopic).waitFor();
  await remove(alice, offTopic);
  await byId(bob, offTopic).locator(".tombstone").waitFor();

  const agenda = await post(alice, "standup moved to 10");
  // A member may neither edit nor delete the owner's message.
  await byId(bob, agenda).waitFor();
  for (const label of ["Edit", "Delete"]) {
    assert.equal(await byId(bob, agenda).getByRole("button", { name: label, exact: true }).count(), 0, `no ${label} for bob`);
  }
  await react(bob, agenda, "🎉");
  await byId(alice, agenda).locator(".reaction", { hasText: "🎉 1" }).waitFor();
  await alice.screenshot({ path: join(shots, "lifecycle-room.png") });

  // Bob looks at the lobby while alice writes twice, then deletes one.
  await bob.click('button.conversation[data-peer=""]');
  const badge = bob.locator('button.conversation[data-room="crew"] .badge');
  await post(alice, "bring the slides");
  const typo = await post(alice, "bring the sildes");
  await badge.filter({ hasText: /^2$/ }).waitFor();
  await remove(alice, typo);
  await badge.filter({ hasText: /^1$/ }).waitFor();

  await bob.click('button.conversation[data-room="crew"]');
  await byId(bob, typo).locator(".tombstone").waitFor();
  await badge.filter({ hasText: /^$/ }).waitFor({ state: "attached" });
  await alice.context().close();
  await bob.context().close();
});
