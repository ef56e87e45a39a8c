require ["fileinto", "mailbox", "special-use", "imap4flags"];
if anyof (header :contains "X-Spam-Flag" "YES", header :contains "X-Spam" "Yes") {
  fileinto :specialuse "\\Junk" :flags "\\Seen" "Junk";
  stop;
}
