require ["editheader", "variables"];
if anyof (header :contains "X-Spam-Flag" "YES", header :contains "X-Spam" "Yes") {
  set "subject" "";
  if header :matches "Subject" "*" { set "subject" "${1}"; }
  deleteheader "Subject";
  addheader :last "Subject" "[SPAM] ${subject}";
}
