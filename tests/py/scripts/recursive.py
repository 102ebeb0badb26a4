"""Recursion of every kind, for comparing call counts with cProfile."""


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def even(n):
    return True if n == 0 else odd(n - 1)


def odd(n):
    return False if n == 0 else even(n - 1)


def gen(n):
    for i in range(n):
        yield i


def consume():
    return sum(x for x in gen(50))


class Tree:
    def __init__(self, depth):
        self.kids = [Tree(depth - 1) for _ in range(2)] if depth else []

    def size(self):
        return 1 + sum(k.size() for k in self.kids)


def fails(n):
    if n == 0:
        raise ValueError("bottom")
    fails(n - 1)


def catcher():
    for _ in range(5):
        try:
            fails(4)
        except ValueError:
            pass


def main():
    fib(18)
    for i in range(20):
        even(i)
    consume()
    Tree(6).size()
    catcher()


if __name__ == "__main__":
    main()
