import unittest

from cart import apply_discount, checkout


class CartTest(unittest.TestCase):
    def test_no_discount(self) -> None:
        self.assertEqual(checkout([10.0, 5.5]), 15.5)

    def test_ten_percent(self) -> None:
        self.assertEqual(apply_discount(200.0, 10), 180.0)

    def test_checkout_with_discount(self) -> None:
        self.assertEqual(checkout([40.0, 60.0], 25), 75.0)


if __name__ == "__main__":
    unittest.main()
