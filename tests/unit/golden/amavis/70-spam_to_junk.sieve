require ["fileinto", "mailbox", "imap4flags"];
if anyof (header :contains "X-Spam-Flag" "YES", header :contains "X-Spam" "Yes") {
  fileinto :create :flags "\\Seen" "Junk";
  stop;
}
