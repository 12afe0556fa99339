#include "adapters/http/request_head.h"

#include <gtest/gtest.h>

#include <string>

namespace medstream::http {
namespace {

TEST(RequestHead, ReadsTheRequestLineTheQueryAndTheFields) {
  auto r = ParseRequestHead(
      "GET /user/a%2Fb%20c?token=t%2B1&charts&x=1+2&x=3 HTTP/1.1\r\n"
      "Host: 127.0.0.1\r\n"
      "Authorization:   Bearer abc \t\r\n"
      "COOKIE: a=b; medstream_token=z\r\n"
      "\r\n");
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->method, "GET");
  EXPECT_EQ(r->path, "/user/a/b c");
  EXPECT_EQ(r->params.at("token"), "t+1");
  EXPECT_EQ(r->params.at("charts"), "");
  EXPECT_EQ(r->params.at("x"), "1 2") << "the first of a repeated name";
  EXPECT_EQ(r->Field("authorization"), "Bearer abc");
  EXPECT_EQ(r->Field("cookie"), "a=b; medstream_token=z");
  EXPECT_EQ(r->Field("absent"), "");
}

TEST(RequestHead, RefusesWhatIsNotTheGrammar) {
  for (const char* bad : {
           "",
           "\r\n",
           "GET / HTTP/1.1\r\n",                     // no empty line
           "GET / HTTP/1.1\n\n",                     // bare LF
           "GET /  HTTP/1.1\r\n\r\n",                // two spaces
           "GET / HTTP/2.0\r\n\r\n",                 // version
           "GET http://h/ HTTP/1.1\r\n\r\n",         // absolute form
           "GET * HTTP/1.1\r\n\r\n",                 // asterisk form
           "G(T / HTTP/1.1\r\n\r\n",                 // method not a token
           "GET /%4 HTTP/1.1\r\n\r\n",               // a broken escape
           "GET /%zz HTTP/1.1\r\n\r\n",              // not hex
           "GET /%00 HTTP/1.1\r\n\r\n",              // a decoded NUL
           "GET /?a=%0a HTTP/1.1\r\n\r\n",           // a decoded LF in the query
           "GET /\x7f HTTP/1.1\r\n\r\n",             // DEL in the target
           "GET / HTTP/1.1\r\nNo colon\r\n\r\n",     // a field without ':'
           "GET / HTTP/1.1\r\nBad name: v\r\n\r\n",  // a name that is not a token
           "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n",   // obsolete folding
           "GET / HTTP/1.1\r\nA: b\rc\r\n\r\n",      // a bare CR
           "GET / HTTP/1.1\r\nA: b\x01\r\n\r\n",     // a control character
       }) {
    EXPECT_FALSE(ParseRequestHead(bad)) << "accepted: " << bad;
  }
}

TEST(RequestHead, BoundsTheSizeAndTheFieldCount) {
  std::string head = "GET / HTTP/1.1\r\n";
  for (size_t i = 0; i < kMaxFields; ++i) head += "A: b\r\n";
  EXPECT_TRUE(ParseRequestHead(head + "\r\n"));
  EXPECT_FALSE(ParseRequestHead(head + "A: b\r\n\r\n")) << "one field past the limit";
  std::string large = "GET / HTTP/1.1\r\nA: " + std::string(kMaxHeadBytes, 'a') + "\r\n\r\n";
  EXPECT_FALSE(ParseRequestHead(large));
}

TEST(RequestHead, PercentDecodingIsWholeOrNothing) {
  EXPECT_EQ(PercentDecode("a%41+b", false), "aA+b");
  EXPECT_EQ(PercentDecode("a%41+b", true), "aA b");
  EXPECT_EQ(PercentDecode("%", true), std::nullopt);
  EXPECT_EQ(PercentDecode("%4", true), std::nullopt);
  EXPECT_EQ(PercentDecode("%1f", true), std::nullopt);
  EXPECT_EQ(PercentDecode("%e2%82%ac", true), "\xe2\x82\xac");
}

}  // namespace
}  // namespace medstream::http
